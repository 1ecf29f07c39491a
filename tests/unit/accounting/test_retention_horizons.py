"""Retention's horizons (UTC midnights, month ends, the new year) and its settings' limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from gateway.accounting.retention import counters_horizon, ledger_horizon
from gateway.settings import Settings


def test_the_ledger_horizon_is_a_utc_midnight_n_days_back() -> None:
    assert ledger_horizon(0) is None and ledger_horizon(None) is None
    late = datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
    assert ledger_horizon(1, late) == datetime(2026, 2, 28, tzinfo=UTC)
    # an instant given with an offset is the same instant in UTC
    tokyo = datetime(2026, 3, 2, 8, 0, tzinfo=timezone(timedelta(hours=9)))
    assert ledger_horizon(30, tokyo) == datetime(2026, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "horizon"),
    [
        (datetime(2026, 11, 25, 9, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC)),
        (datetime(2026, 1, 1, 0, 0, tzinfo=UTC), datetime(2025, 12, 1, tzinfo=UTC)),
        (datetime(2026, 3, 31, 23, 59, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
    ],
)
def test_counters_of_last_month_are_kept(now: datetime, horizon: datetime) -> None:
    assert counters_horizon(now) == horizon


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"THRIFTGATE_ROLLUP_HOURLY_RETENTION_DAYS": "30"}, "LEDGER_RETENTION_DAYS"),
        (
            {
                "THRIFTGATE_LEDGER_RETENTION_DAYS": "30",
                "THRIFTGATE_ROLLUP_HOURLY_RETENTION_DAYS": "10",
            },
            "at least 30",
        ),
        (
            {
                "THRIFTGATE_LEDGER_RETENTION_DAYS": "2",
                "THRIFTGATE_ROLLUP_HOURLY_RETENTION_DAYS": "3",
            },
            "at least 8",
        ),
        ({"THRIFTGATE_LEDGER_RETENTION_DAYS": "-1"}, "greater than or equal to 0"),
    ],
)
def test_hourly_sums_never_go_before_the_rows(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert message in str(info.value)


def test_hourly_retention_at_least_the_ledgers_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTGATE_LEDGER_RETENTION_DAYS", "30")
    monkeypatch.setenv("THRIFTGATE_ROLLUP_HOURLY_RETENTION_DAYS", "30")
    settings = Settings()
    assert (settings.ledger_retention_days, settings.rollup_hourly_retention_days) == (30, 30)
