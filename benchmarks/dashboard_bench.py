"""Dashboard speed over a big ledger: seed N rows into a fresh Postgres database, then time the
pages through a real gateway (HTTP, signed-in session), and the rollup trigger's write cost.

    python benchmarks/dashboard_bench.py                 # 1,000,000 rows, 15 timed loads a page
    python benchmarks/dashboard_bench.py --rows 200000 --runs 5 --keep

Prints medians and p90s in milliseconds. The target: the overview under 500 ms at 1M rows.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.dashboard.seed import SeedPlan, seed_ledger
from tests.support import servers

MODELS = ["gpt-4o-mini", "gpt-4o", "llama-3.1-8b", "claude-3-5-haiku"]
DEPLOYMENTS = ["openai-mini", "openai-4o", "local-llama", "anthropic-haiku"]
PAGES = [
    ("overview 30d per day", "/dashboard/?range=30d"),
    ("overview 7d per hour", "/dashboard/?range=7d&unit=hour"),
    ("overview 7d", "/dashboard/?range=7d"),
    ("overview 24h", "/dashboard/?range=24h"),
    ("tenants 30d", "/dashboard/tenants?range=30d"),
    ("tenant 30d", "/dashboard/tenants/{tenant}?range=30d"),
    ("requests page 1", "/dashboard/requests?range=30d"),
    ("requests, typed tenant name", "/dashboard/requests?range=30d&tenant=bench-00001"),
    (
        "requests, tenant + cache filter",
        "/dashboard/requests?range=30d&tenant={tenant}&cache_status=hit-exact",
    ),
    ("deployments 30d", "/dashboard/deployments?range=30d"),
]
SEED_TENANTS = """
INSERT INTO tenants (id, name, budget_usd, budget_period, flags, created_at)
SELECT md5('bench-' || n), 'bench-' || lpad(n::text, 5, '0'), 100, 'monthly', '{}', now()
FROM generate_series(1, $1::int) AS n
RETURNING id
"""
RAW_OVERVIEW_SQL = """
SELECT date_trunc('day', created_at, 'UTC'), tenant_id, model, deployment, count(*),
       sum(cost_usd), sum(counterfactual_cost_usd), sum(saved_cache_usd),
       sum(saved_compression_usd), sum(saved_routing_usd), sum(prompt_tokens),
       sum(completion_tokens)
FROM usage_ledger WHERE created_at >= now() - interval '30 days'
GROUP BY GROUPING SETS ((1, 2), (3), (4), ())
"""


def ms(samples: list[float]) -> str:
    s = sorted(samples)
    p90 = s[min(len(s) - 1, round(0.9 * (len(s) - 1)))]
    return f"median {statistics.median(s) * 1000:7.1f} ms   p90 {p90 * 1000:7.1f} ms"


async def write_cost(dsn: str, tenants: list[str], batches: int, rows: int) -> dict[str, float]:
    """Seconds per ledger batch insert (the ledger writer's shape) with and without the trigger."""
    out = {}
    conn = await asyncpg.connect(dsn)
    try:
        for label, action in (("with trigger", "ENABLE"), ("without trigger", "DISABLE")):
            await conn.execute(
                f"ALTER TABLE usage_ledger {action} TRIGGER usage_rollup_after_insert"
            )
            took = []
            for i in range(batches):
                plan = SeedPlan(
                    rows,
                    datetime.now(UTC),
                    60,
                    tenants,
                    MODELS,
                    DEPLOYMENTS,
                    id_prefix=f"w{action[0]}{i:04d}",
                )
                t = time.perf_counter()
                await seed_ledger(dsn, plan, analyze=False)
                took.append(time.perf_counter() - t)
            out[label] = statistics.median(took)
        await conn.execute("ALTER TABLE usage_ledger ENABLE TRIGGER usage_rollup_after_insert")
    finally:
        await conn.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--tenants", type=int, default=20, help="e.g. 20000: a real install's count")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--keep", action="store_true", help="keep the database (prints its URL)")
    args = ap.parse_args()

    url = servers.create_database("tg_bench")
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    tmp = Path(tempfile.mkdtemp(prefix="tg-bench-"))
    deployments = [
        {
            "name": d,
            "model": m,
            "provider": "openai_compatible",
            "upstream_model": m,
            "api_base": "http://127.0.0.1:9/v1",
            "input_cost_per_mtok": 0.15,
            "output_cost_per_mtok": 0.6,
        }
        for d, m in zip(DEPLOYMENTS, MODELS, strict=True)
    ]
    gw = servers.GatewayServer(tmp, url, deployments)  # migrates the fresh database
    try:
        # In SQL, not one admin call each: a real install has tens of thousands of tenants.
        tenants = [r["id"] for r in servers.sql(url, SEED_TENANTS, args.tenants)]
        t = time.perf_counter()
        asyncio.run(
            seed_ledger(
                dsn,
                SeedPlan(
                    args.rows, datetime.now(UTC), args.days * 86400, tenants, MODELS, DEPLOYMENTS
                ),
            )
        )
        seeded = time.perf_counter() - t
        (counts,) = servers.sql(
            url,
            "SELECT (SELECT count(*) FROM usage_ledger) AS ledger, "
            "(SELECT count(*) FROM usage_rollup_hourly) AS hourly, "
            "(SELECT count(*) FROM usage_rollup_daily) AS daily",
        )
        print(
            f"seeded {counts['ledger']:,} ledger rows over {args.days} days, "
            f"{args.tenants} tenants, in {seeded:.1f} s (INSERT ... generate_series, "
            f"rollup trigger on); rollup rows: {counts['hourly']:,} hourly, "
            f"{counts['daily']:,} daily"
        )

        client = httpx.Client(base_url=gw.base, timeout=60)
        form = client.get("/dashboard/login").text
        token = re.search(r'name="login_token" value="([^"]+)"', form)
        assert token is not None
        r = client.post(
            "/dashboard/login", data={"admin_key": servers.ADMIN_KEY, "login_token": token.group(1)}
        )
        assert r.status_code in (200, 303) and "thriftgate_dashboard" in client.cookies

        print(f"\npage loads through the gateway ({args.runs} timed after 2 warm-ups):")
        for label, path in PAGES:
            path = path.format(tenant=tenants[0])
            samples = []
            for i in range(args.runs + 2):
                t = time.perf_counter()
                resp = client.get(path)
                took = time.perf_counter() - t
                assert resp.status_code == 200, (path, resp.status_code, resp.text[:300])
                if i >= 2:
                    samples.append(took)
            print(f"  {label:34s} {ms(samples)}")

        async def raw() -> float:
            conn = await asyncpg.connect(dsn)
            try:
                t = time.perf_counter()
                await conn.fetch(RAW_OVERVIEW_SQL)
                return time.perf_counter() - t
            finally:
                await conn.close()

        raw_s = [asyncio.run(raw()) for _ in range(3)]
        print(
            f"\nfor comparison, the overview's aggregates straight over the ledger "
            f"(no rollup): {ms(raw_s)}"
        )

        cost = asyncio.run(write_cost(dsn, tenants, batches=20, rows=200))
        print(
            "\nledger write of one 200-row batch (the writer's multi-row INSERT shape), median "
            "of 20: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in cost.items())
        )
    finally:
        gw.stop()
        if args.keep:
            print(f"\nkept database: {url}")
        else:
            servers.drop_database(url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
