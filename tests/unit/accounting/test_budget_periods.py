"""Budget periods at the calendar's edges (UTC), and what a spent budget says about renewal."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from gateway.accounting.budgets import _used_up, period_end, period_start


@pytest.mark.parametrize(
    ("at", "period", "start", "end"),
    [
        (datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC), "daily", (2024, 2, 29), (2024, 3, 1)),
        (datetime(2024, 2, 29, 12, tzinfo=UTC), "monthly", (2024, 2, 1), (2024, 3, 1)),
        (datetime(2026, 2, 28, 12, tzinfo=UTC), "monthly", (2026, 2, 1), (2026, 3, 1)),
        (datetime(2026, 1, 31, 23, 59, tzinfo=UTC), "monthly", (2026, 1, 1), (2026, 2, 1)),
        (datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), "daily", (2026, 12, 31), (2027, 1, 1)),
        (datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), "monthly", (2026, 12, 1), (2027, 1, 1)),
    ],
)
def test_periods_begin_and_end_at_utc_midnights(
    at: datetime, period: str, start: tuple[int, int, int], end: tuple[int, int, int]
) -> None:
    begun = period_start(period, at)
    assert begun == datetime(*start, tzinfo=UTC)
    assert period_end(period, begun) == datetime(*end, tzinfo=UTC)


def test_a_spent_budget_says_when_it_renews() -> None:
    ends = period_end("monthly", datetime(2026, 11, 1, tzinfo=UTC))
    daily = _used_up(Decimal(5), Decimal("5.01"), ends).message
    assert "next period, from 2026-12-01T00:00:00Z." in daily, daily
    total = _used_up(Decimal(5), Decimal("5.01"), period_end("total", period_start("total")))
    assert "does not renew" in total.message and "next period" not in total.message
