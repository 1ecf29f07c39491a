"""A long-running gateway keeps one remembered budget counter per tenant, not one per day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.accounting import budgets
from gateway.accounting.budgets import BudgetBook
from gateway.db.migrate import upgrade_head
from gateway.db.session import create_engine

pytestmark = pytest.mark.integration


async def test_a_year_of_daily_periods_remembers_one_counter_per_tenant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each (tenant, day) whose counter was ensured stayed in memory for the process's life
    (hunt10 h1): ~200 bytes per budgeted tenant per day, 700 MB a year at 10,000 tenants."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'days.db'}"
    await upgrade_head(url)
    engine = create_engine(url)
    day = [datetime(2026, 1, 1, tzinfo=UTC)]
    monkeypatch.setattr(budgets, "period_start", lambda period, now=None: day[0])
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO tenants (id, name, budget_period, flags, created_at) "
                    "VALUES ('t', 't', 'daily', '{}', CURRENT_TIMESTAMP)"
                )
            )
        book = BudgetBook(engine)
        for _ in range(40):
            await book.reserve("t", Decimal(1), "daily", Decimal("0.01"))
            day[0] += timedelta(days=1)
        assert len(book._known) == 1
        async with engine.connect() as conn:  # every day still got its counter
            counters = (await conn.execute(text("SELECT count(*) FROM budget_counters"))).one()
        assert counters[0] == 40
    finally:
        await book.aclose()
        await engine.dispose()
