"""Pure parts of the dashboard: time windows, number formats, chart payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from gateway.dashboard import views
from gateway.dashboard.queries import BudgetUse, Figures, Overview
from gateway.dashboard.windows import window

NOW = datetime(2026, 11, 24, 15, 42, 7, tzinfo=UTC)


def test_day_windows_start_at_midnight_and_cover_today() -> None:
    w = window("7d", now=NOW)
    assert (w.unit, w.since) == ("day", datetime(2026, 11, 18, tzinfo=UTC))
    buckets = w.buckets()
    assert len(buckets) == 7 and buckets[-1] == datetime(2026, 11, 24, tzinfo=UTC)


def test_hourly_view_of_a_week_keeps_its_start_and_month_stays_daily() -> None:
    hourly = window("7d", "hour", now=NOW)
    assert hourly.unit == "hour" and hourly.since == window("7d", now=NOW).since
    assert len(hourly.buckets()) == 6 * 24 + 16
    assert window("30d", "hour", now=NOW).unit == "day"
    assert window("30d", now=NOW).units == ["day"]


def test_24h_window_is_hourly_and_unknown_ranges_fall_back() -> None:
    w = window("24h", "day", now=NOW)
    assert w.unit == "hour" and w.since == datetime(2026, 11, 23, 16, tzinfo=UTC)
    assert len(w.buckets()) == 24
    assert window("1y; drop table", now=NOW).name == "7d"


def test_money_and_ratio_formats() -> None:
    assert views.usd(Decimal("1234.5")) == "$1,234.50"
    assert views.usd(Decimal("0.000123")) == "$0.0001"
    assert views.usd(Decimal(0)) == "$0.00"
    assert views.exact(Decimal("60.0000000000")) == "60"
    assert views.plain("0.5000") == "0.5" and views.plain(None) == ""
    assert views.pct(None) == "n/a" and views.pct(12.345) == "12.3%"


def test_budget_levels() -> None:
    def use(spent: str, budget: str | None) -> BudgetUse:
        return BudgetUse(
            Decimal(budget) if budget else None, "monthly", NOW, Decimal(spent), Decimal(0)
        )

    assert use("7.9", "10").level == "ok"
    assert use("8", "10").level == "warn"
    assert use("10", "10").level == "over"
    assert use("5", None).level == "ok" and use("5", None).used_pct is None


def test_spend_chart_keeps_the_biggest_tenants_and_folds_the_rest() -> None:
    w = window("24h", now=NOW)
    labels = [f"h{i}" for i in range(24)]
    series = {f"t{i}": [Decimal(i)] * 24 for i in range(12)}
    ov = Overview(w, Figures(), labels, series, [], [], [])
    chart = views.spend_chart(ov, {"t11": "biggest"})
    assert len(chart["datasets"]) == views.MAX_SERIES + 1
    assert chart["datasets"][0]["label"] == "biggest"
    assert chart["datasets"][-1]["label"] == "4 other tenants"
    total = sum(sum(d["data"]) for d in chart["datasets"])
    assert total == sum(range(12)) * 24


def test_csv_cells_guard_formulas_but_keep_negative_amounts_numbers() -> None:
    from gateway.dashboard.ledger_view import _cell

    assert _cell("-0.000099") == "-0.000099"  # a saving below zero still sums
    assert _cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert _cell("-1+2") == "'-1+2"
    assert _cell("@SUM(A1)") == "'@SUM(A1)"
    assert _cell(None) == ""
