"""An operator upgrading: a database at an older revision, holding tenants, keys, a ledger,
budget counters and cache entries, migrated to head keeps every total (the rollups' backfill
and triggers, the reports, the dashboard) on Postgres and SQLite."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.accounting import reports
from gateway.accounting.keys import hash_key
from gateway.dashboard.queries import overview
from gateway.dashboard.windows import window
from gateway.db.migrate import upgrade_head, upgrade_to
from gateway.db.session import create_engine

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TENANTS = [
    ("t1", "acme", "10", "total"),
    ("t2", "globex", "5", "monthly"),
    ("t3", "free", None, "monthly"),
]
N = 1500
LEDGER = (
    "id, request_id, tenant_id, key_id, endpoint, model, deployment, provider, status_code, "
    "error_code, stream, prompt_tokens, completion_tokens, cached_tokens, usage_source, cost_usd, "
    "counterfactual_cost_usd, saved_cache_usd, saved_compression_usd, saved_routing_usd, "
    "latency_ms, ttft_ms, slo_ms, slo_met, cache_status, route_reason, compression_method, "
    "prompt_tokens_original, energy_joules, created_at"
)
# as they stood at 0001, the first release's schema
COUNTERS = "tenant_id, period_start, spent_usd, reserved_usd, updated_at"
CACHE = (
    "id, tenant_id, scope_hash, key_hash, model, query_text, response, prompt_tokens, "
    "completion_tokens, cost_usd, hits, created_at, expires_at"
)


def _ledger() -> list[tuple[Any, ...]]:
    """N requests over 60 days: hits, errors, undispatched ones, measured energy."""
    out = []
    for i in range(N):
        hit = i % 7 == 0
        full = Decimal(i % 113 + 1) / 100_000
        cost = Decimal(0) if hit else full
        out.append(
            (
                f"l{i:07d}", f"req-{i}", TENANTS[i % 3][0], f"k{TENANTS[i % 3][0]}",
                "chat" if i % 5 else "embeddings", ["gpt-4o-mini", "gpt-4o"][i % 2],
                None if i % 13 == 0 else ["dA", "dB"][i % 2], "openai_compatible",
                502 if i % 29 == 0 else 200, None, i % 3 == 0, 100 + i % 50, 10 + i % 9, 0,
                "upstream", cost, full, full if hit else Decimal(0), Decimal(0),
                Decimal(0), 12.5 + i % 40, 3.0, 2000, i % 4 != 0,
                "hit-exact" if hit else "miss", "cheapest", None, None,
                1.5 if i % 17 == 0 else None, NOW - timedelta(seconds=60 * 86400 * i / N),
            )
        )  # fmt: skip
    return out


def _counters(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    month = NOW.replace(day=1, hour=0, minute=0, second=0)
    out = []
    for tid, _, budget, period in TENANTS:
        if budget is not None:
            start = EPOCH if period == "total" else month
            spent = sum((r[15] for r in rows if r[2] == tid and r[29] >= start), Decimal(0))
            out.append((tid, start, spent, Decimal(0), NOW))
    return out


def _cache() -> list[tuple[Any, ...]]:
    return [
        (
            f"c{i}", TENANTS[i % 3][0], "s" * 64, f"{i:064d}", "gpt-4o-mini", f"question {i}",
            json.dumps({"id": f"x{i}", "choices": []}), 10, 5, Decimal("0.0001"), 0,
            NOW - timedelta(hours=i), NOW + timedelta(hours=24 - i),
        )
        for i in range(40)
    ]  # fmt: skip


def _tenants() -> list[tuple[Any, ...]]:
    made = NOW - timedelta(days=90)
    return [(t, n, Decimal(b) if b else None, p, "{}", made) for t, n, b, p in TENANTS]


def _keys() -> list[tuple[Any, ...]]:
    made = NOW - timedelta(days=90)
    return [(f"k{t}", t, hash_key(f"tg-key-{t}"), "tg-key-t", made) for t, *_ in TENANTS]


INSERTS = [
    ("tenants (id, name, budget_usd, budget_period, flags, created_at)", _tenants),
    ("api_keys (id, tenant_id, hash, prefix, created_at)", _keys),
    (f"usage_ledger ({LEDGER})", _ledger),
    (f"budget_counters ({COUNTERS})", lambda: _counters(_ledger())),
    (f"cache_entries ({CACHE})", _cache),
]


async def _fill_postgres(url: str) -> None:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        for target, rows in INSERTS:
            batch = rows()
            marks = ", ".join(f"${i + 1}" for i in range(len(batch[0])))
            await conn.executemany(f"INSERT INTO {target} VALUES ({marks})", batch)
    finally:
        await conn.close()


def _fill_sqlite(path: Path) -> None:
    def value(v: Any) -> Any:
        if isinstance(v, Decimal):
            return str(v)
        return v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v

    con = sqlite3.connect(path)
    try:
        for target, rows in INSERTS:
            batch = [tuple(value(v) for v in r) for r in rows()]
            marks = ", ".join("?" * len(batch[0]))
            con.executemany(f"INSERT INTO {target} VALUES ({marks})", batch)
        con.commit()
    finally:
        con.close()


async def _totals_agree(url: str) -> None:
    rows = _ledger()
    cost = sum((r[15] for r in rows), Decimal(0))
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            by_tenant = (
                await conn.exec_driver_sql(
                    "SELECT tenant_id, sum(requests), sum(cost_usd), sum(energy_requests) "
                    "FROM usage_rollup_daily GROUP BY tenant_id ORDER BY tenant_id"
                )
            ).all()
            spent = dict(
                (
                    await conn.exec_driver_sql("SELECT tenant_id, spent_usd FROM budget_counters")
                ).all()
            )
        assert [r[0] for r in by_tenant] == ["t1", "t2", "t3"]  # backfilled on upgrade
        for tid, requests, tenant_cost, measured in by_tenant:
            mine = [r for r in rows if r[2] == tid]
            assert int(requests) == len(mine)
            assert round(Decimal(str(tenant_cost)), 8) == round(sum(r[15] for r in mine), 8)
            assert int(measured) == sum(1 for r in mine if r[28] is not None)
        assert round(Decimal(str(spent["t1"])), 8) == round(
            sum(r[15] for r in rows if r[2] == "t1"), 8
        )
        for group_by in reports.GROUPS:
            report = await reports.spend(engine, group_by=group_by)
            assert sum(r["requests"] for r in report) == N, group_by
            total = sum(Decimal(r["cost_usd"]) for r in report)
            assert abs(total - cost) < Decimal("1e-7"), group_by
        shown = await overview(engine, window("90d"))
        assert shown.totals.requests == N
        assert abs(shown.totals.cost_usd - cost) < Decimal("1e-7")
    finally:
        await engine.dispose()


@pytest.mark.parametrize("revision", ["0001", "0004_rollup_energy"])
def test_postgres_upgrade_keeps_every_total(fresh_pg_url: str, revision: str) -> None:
    asyncio.run(upgrade_to(fresh_pg_url, revision))
    asyncio.run(_fill_postgres(fresh_pg_url))
    asyncio.run(upgrade_head(fresh_pg_url))
    asyncio.run(_totals_agree(fresh_pg_url))


@pytest.mark.parametrize("revision", ["0001", "0004_rollup_energy"])
def test_sqlite_upgrade_keeps_every_total(tmp_path: Path, revision: str) -> None:
    path = tmp_path / "thriftgate.db"
    url = f"sqlite:///{path}"
    asyncio.run(upgrade_to(url, revision))
    _fill_sqlite(path)
    asyncio.run(upgrade_head(url))
    asyncio.run(_totals_agree(url))
