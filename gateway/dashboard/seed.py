"""Synthetic ledger rows for demos, the dashboard benchmark and the browser tests (Postgres).

One `INSERT ... SELECT generate_series(...)` writes every row inside the database, so a million
rows take seconds, not the minutes a client-side loop would. Rows are deterministic functions
of their index (a hash of it, no random()); tests recompute every figure with SQL over the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

SEED_SQL = """
INSERT INTO usage_ledger (
    id, request_id, tenant_id, key_id, endpoint, model, deployment, provider, status_code,
    error_code, stream, prompt_tokens, completion_tokens, cached_tokens, usage_source,
    cost_usd, counterfactual_cost_usd, saved_cache_usd, saved_compression_usd,
    saved_routing_usd, latency_ms, ttft_ms, slo_ms, slo_met, cache_status, route_reason,
    created_at)
SELECT
    $1 || lpad(g::text, 12, '0'),
    'req-' || $1 || g::text,
    (tenants)[(1 + h % cardinality(tenants))::int],
    NULL, 'chat',
    (models)[(1 + m)::int],
    (deployments)[(1 + m)::int],
    'openai_compatible',
    CASE WHEN h % 53 = 0 THEN 502 WHEN h % 97 = 0 THEN 429 ELSE 200 END,
    NULL, g % 3 = 0,
    pt, ct, 0, 'upstream',
    CASE WHEN hit THEN 0 ELSE round(full_cost * 0.8, 10) END,
    full_cost,
    CASE WHEN hit THEN full_cost ELSE 0 END,
    CASE WHEN hit THEN 0 ELSE round(full_cost * 0.15, 10) END,
    CASE WHEN hit THEN 0 ELSE full_cost - round(full_cost * 0.8, 10)
                                        - round(full_cost * 0.15, 10) END,
    lat, lat * 0.3, 2000, lat <= 2000,
    CASE WHEN hit THEN (CASE WHEN h % 2 = 0 THEN 'hit-exact' ELSE 'hit-semantic' END)
         ELSE 'miss' END,
    'cheapest',
    $2::timestamptz - make_interval(secs => ($3::float8 * g) / $4)
FROM (
    SELECT g, h, m, pt, ct, hit,
           round((pt * (in_prices)[(1 + m)::int] + ct * (out_prices)[(1 + m)::int])
                 / 1000000.0, 10) AS full_cost,
           (150 + (h / 31) % 900 + m * 400)::float8 AS lat
    FROM (
        SELECT g, h, (h / 7) % $5 AS m, 200 + (h / 3) % 1800 AS pt, 20 + (h / 5) % 400 AS ct,
               (h / 11) % 9 = 0 AS hit
        FROM (SELECT g, hashint8(g)::bigint & 2147483647 AS h
              FROM generate_series(1::bigint, $4::bigint) AS g) hashed
    ) base,
    LATERAL (SELECT $9::numeric[] AS in_prices, $10::numeric[] AS out_prices) prices
) rows,
LATERAL (SELECT $6::text[] AS tenants, $7::text[] AS models, $8::text[] AS deployments) names
"""


@dataclass(frozen=True)
class SeedPlan:
    """What to write: `rows` requests spread evenly over `span_s` seconds before `end`."""

    rows: int
    end: datetime
    span_s: float
    tenant_ids: list[str]
    models: list[str]
    deployments: list[str]
    id_prefix: str = "seed"
    # USD per million (input, output) tokens for each model; default: 0.15/0.60 times its index.
    prices: list[tuple[Decimal, Decimal]] | None = None

    def price_arrays(self) -> tuple[list[Decimal], list[Decimal]]:
        prices = self.prices or [
            (Decimal("0.15") * (i + 1), Decimal("0.60") * (i + 1)) for i in range(len(self.models))
        ]
        if len(prices) != len(self.models):
            raise ValueError("one price pair per model")
        return [p[0] for p in prices], [p[1] for p in prices]


async def seed_ledger(dsn: str, plan: SeedPlan, *, analyze: bool = True) -> None:
    """Insert the plan's rows; `dsn` is a plain postgresql:// URL (asyncpg)."""
    if len(plan.models) != len(plan.deployments):
        raise ValueError("models and deployments pair up one to one")
    in_prices, out_prices = plan.price_arrays()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            SEED_SQL,
            plan.id_prefix,
            plan.end,
            plan.span_s,
            plan.rows,
            len(plan.models),
            plan.tenant_ids,
            plan.models,
            plan.deployments,
            in_prices,
            out_prices,
        )
        if analyze:
            await conn.execute("ANALYZE usage_ledger")
    finally:
        await conn.close()
