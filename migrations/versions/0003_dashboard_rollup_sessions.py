"""dashboard: hourly and daily usage rollups kept by a trigger, dashboard sessions

Revision ID: 0003_dashboard
Revises: 0002_cache
Create Date: 2026-11-24 01:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_dashboard"
down_revision: str | None = "0002_cache"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(precision=20, scale=10)
TABLES = {"usage_rollup_hourly": "hour", "usage_rollup_daily": "day"}
KEYS = "bucket, tenant_id, model, deployment"
SUMS = (
    "requests, errors, cache_hits, dispatched, prompt_tokens, completion_tokens, cost_usd, "
    "counterfactual_cost_usd, saved_cache_usd, saved_compression_usd, saved_routing_usd, "
    "slo_met, slo_known, latency_ms_sum"
)
HIT = "cache_status IN ('hit-exact', 'hit-semantic')"


def _on_conflict(table: str) -> str:
    sets = ", ".join(f"{c} = {table}.{c} + EXCLUDED.{c}" for c in SUMS.split(", "))
    return f"ON CONFLICT ({KEYS}) DO UPDATE SET {sets}"


def _select(source: str, bucket: str, *, sqlite: bool = False) -> str:
    """Ledger-shaped rows of `source` summed into rollup rows, in key order."""

    def count_if(cond: str) -> str:
        return (
            f"sum(CASE WHEN {cond} THEN 1 ELSE 0 END)"
            if sqlite
            else (f"count(*) FILTER (WHERE {cond})")
        )

    return f"""
        SELECT {bucket}, tenant_id, model, COALESCE(deployment, ''),
               count(*), {count_if("status_code >= 400")}, {count_if(HIT)},
               {count_if("NOT " + HIT)},
               COALESCE(sum(prompt_tokens), 0), COALESCE(sum(completion_tokens), 0),
               COALESCE(sum(cost_usd), 0), COALESCE(sum(counterfactual_cost_usd), 0),
               COALESCE(sum(saved_cache_usd), 0), COALESCE(sum(saved_compression_usd), 0),
               COALESCE(sum(saved_routing_usd), 0),
               {count_if("slo_met")}, count(slo_met),
               COALESCE(sum(CASE WHEN {HIT} THEN 0 ELSE latency_ms END), 0)
        FROM {source}
        GROUP BY 1, 2, 3, 4
        ORDER BY 1, 2, 3, 4"""


def _pg_bucket(unit: str) -> str:
    return f"date_trunc('{unit}', created_at, 'UTC')"


def _sqlite_bucket(unit: str, column: str = "created_at") -> str:
    fmt = "%Y-%m-%d %H:00:00.000000" if unit == "hour" else "%Y-%m-%d 00:00:00.000000"
    return f"strftime('{fmt}', {column})"


# One upsert per table per INSERT statement (the ledger writer inserts a batch per statement);
# ORDER BY keeps the lock order stable between concurrent writers.
PG_FUNCTION = f"""
CREATE FUNCTION usage_rollup_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
{
    "".join(
        f'''    INSERT INTO {table} ({KEYS}, {SUMS})
    {_select("new_rows", _pg_bucket(unit))}
    {_on_conflict(table)};
'''
        for table, unit in TABLES.items()
    )
}    RETURN NULL;
END
$$;
"""
PG_TRIGGER = """
CREATE TRIGGER usage_rollup_after_insert
    AFTER INSERT ON usage_ledger REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION usage_rollup_add();
"""


def _sqlite_row_insert(table: str, unit: str) -> str:
    hit = HIT.replace("cache_status", "NEW.cache_status")
    return f"""
    INSERT INTO {table} ({KEYS}, {SUMS})
    VALUES ({_sqlite_bucket(unit, "NEW.created_at")}, NEW.tenant_id, NEW.model,
            COALESCE(NEW.deployment, ''), 1, NEW.status_code >= 400, {hit}, NOT ({hit}),
            NEW.prompt_tokens, NEW.completion_tokens, NEW.cost_usd,
            NEW.counterfactual_cost_usd, NEW.saved_cache_usd, NEW.saved_compression_usd,
            NEW.saved_routing_usd, COALESCE(NEW.slo_met, 0), NEW.slo_met IS NOT NULL,
            CASE WHEN {hit} THEN 0 ELSE NEW.latency_ms END)
    {_on_conflict(table)};"""


# SQLite (the embedded default) has no statement triggers: one upsert per inserted row.
SQLITE_TRIGGER = f"""
CREATE TRIGGER usage_rollup_after_insert AFTER INSERT ON usage_ledger
BEGIN{"".join(_sqlite_row_insert(t, u) for t, u in TABLES.items())}
END;
"""


def _rollup_table(name: str) -> None:
    op.create_table(
        name,
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("deployment", sa.String(length=200), nullable=False),
        *(sa.Column(c, sa.BigInteger(), nullable=False) for c in SUMS.split(", ")[:6]),
        *(sa.Column(c, MONEY, nullable=False) for c in SUMS.split(", ")[6:11]),
        sa.Column("slo_met", sa.BigInteger(), nullable=False),
        sa.Column("slo_known", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms_sum", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "bucket", "tenant_id", "model", "deployment", name=op.f(f"pk_{name}")
        ),
    )


def upgrade() -> None:
    for table in TABLES:
        _rollup_table(table)
    op.create_table(
        "dashboard_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("key_check", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_dashboard_sessions")),
    )
    op.create_index(op.f("ix_dashboard_sessions_expires_at"), "dashboard_sessions", ["expires_at"])
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute(SQLITE_TRIGGER)
    else:
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)
    # Rows already in the ledger (an upgrade of a running install).
    for table, unit in TABLES.items():
        bucket = _sqlite_bucket(unit) if sqlite else _pg_bucket(unit)
        op.execute(
            f"INSERT INTO {table} ({KEYS}, {SUMS}) "
            + _select("usage_ledger", bucket, sqlite=sqlite)
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS usage_rollup_after_insert")
    else:
        op.execute("DROP TRIGGER IF EXISTS usage_rollup_after_insert ON usage_ledger")
        op.execute("DROP FUNCTION IF EXISTS usage_rollup_add()")
    op.drop_index(op.f("ix_dashboard_sessions_expires_at"), table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")
    for table in TABLES:
        op.drop_table(table)
