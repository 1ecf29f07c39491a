"""Migration 0004: the rollups' energy columns agree with the ledger (Postgres and SQLite),
count only measured rows, and an upgrade folds in measured rows already in the ledger."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.dashboard.seed import SeedPlan, seed_ledger
from gateway.db.migrate import upgrade_head, upgrade_to
from tests.support.servers import sql

pytestmark = pytest.mark.integration

COLUMNS = (
    "id, request_id, tenant_id, endpoint, model, deployment, status_code, stream, prompt_tokens, "
    "completion_tokens, cached_tokens, usage_source, cost_usd, counterfactual_cost_usd, "
    "saved_cache_usd, saved_compression_usd, saved_routing_usd, latency_ms, cache_status, "
    "energy_joules, created_at"
)
# (id, tenant, deployment, completion tokens, joules or None, minutes after the hour)
ROWS = [
    ("e1", "t1", "gpu", 40, 12.5, 1),
    ("e2", "t1", "gpu", 60, 20.0, 2),
    ("e3", "t1", "gpu", 10, None, 3),  # not measured: counts as a request, not in the energy
    ("e4", "t2", "gpu", 30, 9.0, 4),
    ("e5", "t1", "gpu-new", 5, 1.5, 5),  # a key no rollup row has yet: this trigger may be first
    ("e6", "t1", "da", 7, None, 6),  # a cloud row
]
LEDGER_BY = """
SELECT date_trunc('{unit}', created_at, 'UTC') AS bucket, tenant_id, model,
       COALESCE(deployment, '') AS deployment, count(*) AS requests,
       COALESCE(sum(energy_joules), 0) AS energy_joules,
       COALESCE(sum(completion_tokens) FILTER (WHERE energy_joules IS NOT NULL), 0) AS tokens,
       count(energy_joules) AS measured
FROM usage_ledger GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
"""
ROLLUP = """
SELECT bucket, tenant_id, model, deployment, requests, energy_joules,
       energy_completion_tokens AS tokens, energy_requests AS measured
FROM {table} ORDER BY 1, 2, 3, 4
"""
HOUR = datetime(2026, 11, 25, 10, tzinfo=UTC)


def _pg_insert(url: str, rows: list[tuple]) -> None:  # type: ignore[type-arg]
    """One multi-row statement (what the ledger writer does): one statement-trigger call."""
    values = ", ".join(
        f"('{i}', 'r-{i}', '{t}', 'chat', 'a', '{d}', 200, false, 3, {ct}, 0, 'upstream', "
        f"0, 0, 0, 0, 0, 5, 'miss', {'NULL' if j is None else j}, "
        f"'{HOUR.isoformat()}'::timestamptz + interval '{m} minutes')"
        for i, t, d, ct, j, m in rows
    )
    sql(url, f"INSERT INTO usage_ledger ({COLUMNS}) VALUES {values} ON CONFLICT (id) DO NOTHING")


def _pg_matches(url: str) -> None:
    for table, unit in (("usage_rollup_hourly", "hour"), ("usage_rollup_daily", "day")):
        expected = [tuple(r.values()) for r in sql(url, LEDGER_BY.format(unit=unit))]
        got = [tuple(r.values()) for r in sql(url, ROLLUP.format(table=table))]
        assert got == expected, table


def test_postgres_energy_rollup_matches_the_ledger(fresh_pg_url: str) -> None:
    asyncio.run(upgrade_head(fresh_pg_url))
    dsn = fresh_pg_url.replace("postgresql+asyncpg://", "postgresql://")
    plan = SeedPlan(300, HOUR, 3600, ["t1", "t2"], ["a"], ["gpu"], id_prefix="s")
    asyncio.run(seed_ledger(dsn, plan))
    _pg_insert(fresh_pg_url, ROWS)
    _pg_insert(fresh_pg_url, ROWS[:2])  # a replayed spool segment: nothing counts twice
    _pg_matches(fresh_pg_url)
    [gpu] = sql(
        fresh_pg_url,
        "SELECT sum(energy_joules) AS j, sum(energy_completion_tokens) AS tok, "
        "sum(energy_requests) AS n FROM usage_rollup_daily WHERE deployment = 'gpu'",
    )
    assert (gpu["j"], gpu["tok"], gpu["n"]) == (41.5, 130, 3)


def test_postgres_upgrade_folds_in_measured_rows_already_stored(fresh_pg_url: str) -> None:
    asyncio.run(upgrade_to(fresh_pg_url, "0003_dashboard"))
    _pg_insert(fresh_pg_url, ROWS)
    asyncio.run(upgrade_head(fresh_pg_url))
    _pg_matches(fresh_pg_url)
    _pg_insert(fresh_pg_url, [("e7", "t1", "gpu", 4, 2.0, 7)])  # and the trigger runs after
    _pg_matches(fresh_pg_url)


def test_sqlite_energy_rollup_matches_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "tg.db"
    asyncio.run(upgrade_head(f"sqlite+aiosqlite:///{path}"))
    with sqlite3.connect(path) as db:
        for i, t, d, ct, j, m in ROWS:
            db.execute(
                f"INSERT INTO usage_ledger ({COLUMNS}) VALUES (?, ?, ?, 'chat', 'a', ?, 200, 0, "
                "3, ?, 0, 'upstream', 0, 0, 0, 0, 0, 5, 'miss', ?, ?)",
                (i, f"r-{i}", t, d, ct, j, f"2026-11-25 10:{m:02d}:00.000000"),
            )
        got = db.execute(
            "SELECT bucket, tenant_id, deployment, requests, energy_joules, "
            "energy_completion_tokens, energy_requests FROM usage_rollup_hourly ORDER BY 2, 3"
        ).fetchall()
    bucket = "2026-11-25 10:00:00.000000"
    assert got == [
        (bucket, "t1", "da", 1, 0.0, 0, 0),
        (bucket, "t1", "gpu", 3, 32.5, 100, 2),
        (bucket, "t1", "gpu-new", 1, 1.5, 5, 1),
        (bucket, "t2", "gpu", 1, 9.0, 30, 1),
    ]
