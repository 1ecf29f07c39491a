"""The dashboard's rollups (kept by a trigger on usage_ledger) agree with the ledger itself."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from gateway.dashboard.seed import SeedPlan, seed_ledger
from gateway.db.migrate import upgrade_head
from tests.support.servers import sql

pytestmark = pytest.mark.integration

LEDGER_BY_HOUR = """
SELECT date_trunc('{unit}', created_at, 'UTC') AS bucket, tenant_id, model,
       COALESCE(deployment, '') AS deployment, count(*) AS requests,
       count(*) FILTER (WHERE status_code >= 400) AS errors,
       count(*) FILTER (WHERE cache_status IN ('hit-exact', 'hit-semantic')) AS cache_hits,
       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
       sum(cost_usd) AS cost_usd, sum(counterfactual_cost_usd) AS counterfactual_cost_usd,
       sum(saved_cache_usd) + sum(saved_compression_usd) + sum(saved_routing_usd) AS saved,
       count(*) FILTER (WHERE slo_met) AS slo_met, count(slo_met) AS slo_known
FROM usage_ledger GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
"""
ROLLUP = """
SELECT bucket, tenant_id, model, deployment, requests, errors, cache_hits, prompt_tokens,
       completion_tokens, cost_usd, counterfactual_cost_usd,
       saved_cache_usd + saved_compression_usd + saved_routing_usd AS saved, slo_met, slo_known
FROM {table} ORDER BY 1, 2, 3, 4
"""
ROW = """
INSERT INTO usage_ledger (id, request_id, tenant_id, endpoint, model, deployment, status_code,
    stream, prompt_tokens, completion_tokens, cached_tokens, usage_source, cost_usd,
    counterfactual_cost_usd, saved_cache_usd, saved_compression_usd, saved_routing_usd,
    latency_ms, cache_status, created_at)
VALUES ($1, 'r', 't-extra', 'chat', 'm', NULL, 400, false, 1, 0, 0, 'upstream', 0, 0, 0, 0, 0,
        5, 'bypass', now())
ON CONFLICT (id) DO NOTHING
"""


def _rows(records: list) -> list[tuple]:  # type: ignore[type-arg]
    return [tuple(r.values()) for r in records]


def test_rollups_match_ledger_sums_and_ignore_replayed_rows(fresh_pg_url: str) -> None:
    asyncio.run(upgrade_head(fresh_pg_url))
    dsn = fresh_pg_url.replace("postgresql+asyncpg://", "postgresql://")
    plan = SeedPlan(
        5000, datetime.now(UTC), 3 * 86400, ["t1", "t2", "t3"], ["a", "b"], ["da", "db"]
    )
    asyncio.run(seed_ledger(dsn, plan))
    # The ledger writer replays a spool segment with ON CONFLICT DO NOTHING after a crash:
    # a row inserted twice must count once. And a request never dispatched (no deployment).
    sql(fresh_pg_url, ROW, "dup-1")
    sql(fresh_pg_url, ROW, "dup-1")
    # A whole batch of already-stored rows again: all conflicts, nothing added.
    sql(
        fresh_pg_url,
        "INSERT INTO usage_ledger SELECT * FROM usage_ledger ORDER BY id "
        "LIMIT 500 ON CONFLICT (id) DO NOTHING",
    )
    for table, unit in (("usage_rollup_hourly", "hour"), ("usage_rollup_daily", "day")):
        expected = _rows(sql(fresh_pg_url, LEDGER_BY_HOUR.format(unit=unit)))
        got = _rows(sql(fresh_pg_url, ROLLUP.format(table=table)))
        assert got == expected, table
    (total,) = sql(fresh_pg_url, "SELECT sum(requests) FROM usage_rollup_daily")[0]
    assert total == 5001
    (none_row,) = sql(
        fresh_pg_url,
        "SELECT deployment, errors, dispatched, latency_ms_sum "
        "FROM usage_rollup_hourly WHERE tenant_id = 't-extra'",
    )
    assert tuple(none_row.values()) == ("", 1, 1, 5.0)
