"""Budget reservations on SQLite (the embedded default), which takes the SQLAlchemy statement,
not Postgres's raw one: the same rule, generations included."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.accounting.budgets import BudgetBook, upsert_counter_delta
from gateway.db.migrate import upgrade_head
from gateway.db.session import create_engine
from gateway.errors import BudgetExceeded

pytestmark = pytest.mark.integration


async def test_reservations_generations_and_releases_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'budget.db'}"
    await upgrade_head(url)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO tenants (id, name, budget_period, flags, created_at) "
                    "VALUES ('t', 't', 'daily', '{}', CURRENT_TIMESTAMP)"
                )
            )
        book = BudgetBook(engine, reservation_ttl_s=1.0)
        budget = Decimal(1)
        start, first = await book.reserve("t", budget, "daily", Decimal("0.6"))
        await book.reserve("t", budget, "daily", Decimal("0.6"))  # 0.6 < 1: admitted
        with pytest.raises(BudgetExceeded):
            await book.reserve("t", budget, "daily", Decimal("0.6"))  # 1.2 >= 1
        await asyncio.sleep(2.1)  # two generations: the first two are dropped (a dead process's)
        book.forget("t")
        _, later = await book.reserve("t", budget, "daily", Decimal("0.3"))
        assert later >= first + 2
        async with engine.begin() as conn:
            # settle the live one; the dropped ones' late releases must not go below zero
            await upsert_counter_delta(
                conn, "t", start, spent_delta=Decimal("0.1"), reserved_delta=Decimal("-0.3"),
                epoch=later,
            )  # fmt: skip
            await upsert_counter_delta(
                conn, "t", start, spent_delta=Decimal(0), reserved_delta=Decimal("-1.2"),
                epoch=first,
            )  # fmt: skip
            row = (
                await conn.execute(
                    text("SELECT spent_usd, reserved_usd, reserved_prev_usd FROM budget_counters")
                )
            ).one()
        assert [Decimal(str(v)) for v in row] == [Decimal("0.1"), 0, 0]
    finally:
        await engine.dispose()
