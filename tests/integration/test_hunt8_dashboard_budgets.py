"""The dashboard's budget column with many tenants (hunt 8, h5).

`/dashboard/tenants` read every tenant's budget counter with one (tenant, period start) pair of
bind parameters per tenant: past 16,383 tenants that is more than asyncpg's 32,767 arguments,
and the page was a 500 (logging a 2 MB statement each time).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.accounting.budgets import EPOCH, period_start
from gateway.dashboard.queries import budget_use
from gateway.db.migrate import upgrade_head
from gateway.db.session import create_engine
from tests.support.servers import sql

pytestmark = pytest.mark.integration

MANY = 17_000  # two parameters each passed asyncpg's 32,767 at 16,384

TENANTS = """
INSERT INTO tenants (id, name, budget_usd, budget_period, flags, created_at)
SELECT 'big' || g, 'big-' || g, 1, 'monthly', '{}', now() FROM generate_series(1, $1) g
"""
TENANT = """
INSERT INTO tenants (id, name, budget_usd, budget_period, flags, created_at)
VALUES ($1, $1, $2, $3, '{}', now())
"""
COUNTER = """
INSERT INTO budget_counters (tenant_id, period_start, spent_usd, reserved_usd, updated_at,
    reserved_prev_usd, reserve_epoch)
VALUES ($1, $2, $3, 0, now(), 0, 0)
"""


def _counters(now: datetime) -> list[tuple[str, datetime, Decimal]]:
    """Each tenant's month, day and lifetime counters, different amounts in each."""
    month, day = period_start("monthly", now), period_start("daily", now)
    out = []
    for tid in ("daily-t", "total-t", "monthly-t", "big7"):
        out += [
            (tid, month, Decimal("5")),
            (tid, day, Decimal("0.25")),
            (tid, EPOCH, Decimal("30")),
        ]
    return out


EXPECTED = {
    "daily-t": Decimal("0.25"),
    "total-t": Decimal("30"),
    "monthly-t": Decimal("5"),
    "big7": Decimal("5"),
    "big8": Decimal("0"),  # no counter yet
}


async def _use(url: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    engine = create_engine(url, pool_size=1)
    try:
        return await budget_use(engine, rows)
    finally:
        await engine.dispose()


def _tenant_rows(ids: list[str], periods: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {"id": tid, "budget_usd": "1", "budget_period": periods.get(tid, "monthly")} for tid in ids
    ]


PERIODS = {"daily-t": "daily", "total-t": "total", "monthly-t": "monthly"}


def test_budget_column_with_more_tenants_than_bind_parameters(fresh_pg_url: str) -> None:
    asyncio.run(upgrade_head(fresh_pg_url))
    now = datetime.now(UTC)
    sql(fresh_pg_url, TENANTS, MANY)
    for tid, period in PERIODS.items():
        sql(fresh_pg_url, TENANT, tid, Decimal(1), period)
    for tid, start, spent in _counters(now):
        sql(fresh_pg_url, COUNTER, tid, start, spent)
    ids = [f"big{i}" for i in range(1, MANY + 1)] + list(PERIODS)
    use = asyncio.run(_use(fresh_pg_url, _tenant_rows(ids, PERIODS)))
    assert len(use) == len(ids)
    for tid, spent in EXPECTED.items():
        assert use[tid].spent_usd == spent, tid
        assert use[tid].period == PERIODS.get(tid, "monthly")


def test_budget_column_picks_each_tenants_period_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'tg.db'}"
    asyncio.run(upgrade_head(url))
    now = datetime.now(UTC)

    async def seed() -> None:
        from sqlalchemy import insert

        from gateway.db.models import BudgetCounter, Tenant

        engine = create_engine(url, pool_size=1)
        try:
            async with engine.begin() as conn:
                for tid in ("big7", "big8", *PERIODS):
                    await conn.execute(
                        insert(Tenant.__table__).values(
                            id=tid,
                            name=tid,
                            budget_usd=Decimal(1),
                            budget_period=PERIODS.get(tid, "monthly"),
                            flags={},
                            created_at=now,
                        )
                    )
                for tid, start, spent in _counters(now):
                    await conn.execute(
                        insert(BudgetCounter.__table__).values(
                            tenant_id=tid,
                            period_start=start,
                            spent_usd=spent,
                            reserved_usd=Decimal(0),
                            reserved_prev_usd=Decimal(0),
                            reserve_epoch=0,
                            updated_at=now,
                        )
                    )
        finally:
            await engine.dispose()

    asyncio.run(seed())
    ids = ["big7", "big8", *PERIODS]
    use = asyncio.run(_use(url, _tenant_rows(ids, PERIODS)))
    for tid, spent in EXPECTED.items():
        assert use[tid].spent_usd == spent, tid
