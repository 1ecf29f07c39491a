"""A budget counter made after old ledger rows were deleted (an operator's own retention job,
or `THRIFTGATE_LEDGER_RETENTION_DAYS`) still counts what they cost: it reads the rollups."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from gateway.accounting.budgets import EPOCH, ensure_counter, period_start
from gateway.dashboard.seed import SeedPlan, seed_ledger
from gateway.db.migrate import upgrade_head
from gateway.db.session import create_engine
from tests.support.servers import sql

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
TENANTS = ["ta", "tb"]


async def _counter_from_scratch(url: str, tenant: str, start: datetime) -> Decimal:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await ensure_counter(conn, tenant, start)
            spent = (
                await conn.exec_driver_sql(
                    "SELECT spent_usd FROM budget_counters "
                    f"WHERE tenant_id = '{tenant}' AND period_start = '{start.isoformat()}'"
                )
            ).scalar_one()
        return Decimal(str(spent))
    finally:
        await engine.dispose()


def test_a_counter_made_after_old_rows_were_deleted_still_counts_them(fresh_pg_url: str) -> None:
    """A tenant given a total (or monthly) budget gets a counter holding what it already
    spent: read from the ledger, it missed every row an operator's retention had deleted, and
    the tenant could spend its budget again."""
    asyncio.run(upgrade_head(fresh_pg_url))
    for t in TENANTS:
        sql(fresh_pg_url, "INSERT INTO tenants (id, name, budget_period, flags, created_at) "
            "VALUES ($1, $1, 'total', '{}', now())", t)  # fmt: skip
    plan = SeedPlan(2000, NOW, 90 * 86400, TENANTS, ["m1", "m2"], ["d1", "d2"], id_prefix="c")
    asyncio.run(seed_ledger(fresh_pg_url.replace("+asyncpg", ""), plan))
    month = period_start("monthly", NOW)
    [total] = sql(
        fresh_pg_url,
        "SELECT sum(cost_usd) AS s, sum(cost_usd) FILTER (WHERE created_at >= $1) AS m "
        "FROM usage_ledger WHERE tenant_id = 'ta'",
        month,
    )
    # what a retention job leaves: the last day only
    sql(fresh_pg_url, "DELETE FROM usage_ledger WHERE created_at < $1", NOW - timedelta(days=1))
    assert asyncio.run(_counter_from_scratch(fresh_pg_url, "ta", EPOCH)) == total["s"]
    assert asyncio.run(_counter_from_scratch(fresh_pg_url, "ta", month)) == total["m"]
