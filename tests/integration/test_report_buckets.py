"""`/admin/spend?group_by=day|hour` buckets in UTC, whatever the database's own time zone."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.accounting.reports import spend
from gateway.db.migrate import upgrade_head
from tests.support.servers import sql

pytestmark = pytest.mark.integration

ROW = """
INSERT INTO usage_ledger (id, request_id, tenant_id, endpoint, model, deployment, status_code,
    stream, prompt_tokens, completion_tokens, cached_tokens, usage_source, cost_usd,
    counterfactual_cost_usd, saved_cache_usd, saved_compression_usd, saved_routing_usd,
    latency_ms, cache_status, created_at)
VALUES ('l1', 'r', 't', 'chat', 'm', 'd', 200, false, 1, 1, 0, 'upstream', 0.5, 0.5, 0, 0, 0,
        5, 'miss', '2026-11-24T12:13:00Z')
"""


def test_day_and_hour_buckets_are_utc_on_a_database_far_from_utc(fresh_pg_url: str) -> None:
    name = fresh_pg_url.rsplit("/", 1)[1]
    sql(fresh_pg_url, f"ALTER DATABASE {name} SET timezone TO 'Pacific/Kiritimati'")  # UTC+14
    asyncio.run(upgrade_head(fresh_pg_url))
    sql(fresh_pg_url, ROW)

    async def buckets(unit: str) -> list[str]:
        engine = create_async_engine(fresh_pg_url)
        try:
            return [r[unit] for r in await spend(engine, group_by=unit)]
        finally:
            await engine.dispose()

    assert asyncio.run(buckets("day")) == ["2026-11-24"]
    assert asyncio.run(buckets("hour")) == ["2026-11-24T12:00"]
