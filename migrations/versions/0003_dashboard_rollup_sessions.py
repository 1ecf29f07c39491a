"""dashboard: hourly usage rollup kept by a trigger, dashboard sessions

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
SUMS = (
    "requests, errors, prompt_tokens, completion_tokens, cost_usd, counterfactual_cost_usd, "
    "saved_cache_usd, saved_compression_usd, saved_routing_usd, slo_met, slo_known, "
    "latency_ms_sum"
)
KEYS = "bucket, tenant_id, model, deployment, cache_status"


def _select(source: str, bucket: str) -> str:
    """Rows of `source` (ledger-shaped) summed into rollup rows."""
    return f"""
        SELECT {bucket} AS bucket, tenant_id, model, COALESCE(deployment, ''), cache_status,
               count(*), count(*) FILTER (WHERE status_code >= 400),
               COALESCE(sum(prompt_tokens), 0), COALESCE(sum(completion_tokens), 0),
               COALESCE(sum(cost_usd), 0), COALESCE(sum(counterfactual_cost_usd), 0),
               COALESCE(sum(saved_cache_usd), 0), COALESCE(sum(saved_compression_usd), 0),
               COALESCE(sum(saved_routing_usd), 0),
               count(*) FILTER (WHERE slo_met), count(slo_met),
               COALESCE(sum(latency_ms), 0)
        FROM {source}
        GROUP BY 1, 2, 3, 4, 5
        ORDER BY 1, 2, 3, 4, 5"""


ON_CONFLICT = f"""
    ON CONFLICT ({KEYS}) DO UPDATE SET
        {", ".join(f"{c} = usage_rollup_hourly.{c} + EXCLUDED.{c}" for c in SUMS.split(", "))}"""

PG_FUNCTION = f"""
CREATE FUNCTION usage_rollup_hourly_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One upsert per INSERT statement (the ledger writer inserts a batch per statement);
    -- ORDER BY keeps lock order stable between concurrent writers.
    INSERT INTO usage_rollup_hourly ({KEYS}, {SUMS})
    {_select("new_rows", "date_trunc('hour', created_at, 'UTC')")}
    {ON_CONFLICT};
    RETURN NULL;
END
$$;
"""

PG_TRIGGER = """
CREATE TRIGGER usage_rollup_hourly_after_insert
    AFTER INSERT ON usage_ledger REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION usage_rollup_hourly_add();
"""

# SQLite (the embedded default) has no statement triggers: one upsert per inserted row.
SQLITE_HOUR = "strftime('%Y-%m-%d %H:00:00.000000', NEW.created_at)"
SQLITE_TRIGGER = f"""
CREATE TRIGGER usage_rollup_hourly_after_insert AFTER INSERT ON usage_ledger
BEGIN
    INSERT INTO usage_rollup_hourly ({KEYS}, {SUMS})
    VALUES ({SQLITE_HOUR}, NEW.tenant_id, NEW.model, COALESCE(NEW.deployment, ''),
            NEW.cache_status, 1, NEW.status_code >= 400, NEW.prompt_tokens,
            NEW.completion_tokens, NEW.cost_usd, NEW.counterfactual_cost_usd,
            NEW.saved_cache_usd, NEW.saved_compression_usd, NEW.saved_routing_usd,
            COALESCE(NEW.slo_met, 0), NEW.slo_met IS NOT NULL, NEW.latency_ms)
    {ON_CONFLICT};
END;
"""


def upgrade() -> None:
    op.create_table(
        "usage_rollup_hourly",
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("deployment", sa.String(length=200), nullable=False),
        sa.Column("cache_status", sa.String(length=16), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", MONEY, nullable=False),
        sa.Column("counterfactual_cost_usd", MONEY, nullable=False),
        sa.Column("saved_cache_usd", MONEY, nullable=False),
        sa.Column("saved_compression_usd", MONEY, nullable=False),
        sa.Column("saved_routing_usd", MONEY, nullable=False),
        sa.Column("slo_met", sa.BigInteger(), nullable=False),
        sa.Column("slo_known", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms_sum", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "bucket", "tenant_id", "model", "deployment", "cache_status",
            name=op.f("pk_usage_rollup_hourly"),
        ),
    )
    op.create_table(
        "dashboard_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("key_check", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_dashboard_sessions")),
    )
    op.create_index(
        op.f("ix_dashboard_sessions_expires_at"), "dashboard_sessions", ["expires_at"]
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)
        backfill = _select("usage_ledger", "date_trunc('hour', created_at, 'UTC')")
    else:
        op.execute(SQLITE_TRIGGER)
        backfill = _select(
            "usage_ledger", "strftime('%Y-%m-%d %H:00:00.000000', created_at)"
        ).replace("count(*) FILTER (WHERE slo_met)", "sum(COALESCE(slo_met, 0))").replace(
            "count(*) FILTER (WHERE status_code >= 400)", "sum(status_code >= 400)"
        )
    op.execute(f"INSERT INTO usage_rollup_hourly ({KEYS}, {SUMS}) {backfill}")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS usage_rollup_hourly_after_insert ON usage_ledger"
               if op.get_bind().dialect.name == "postgresql"
               else "DROP TRIGGER IF EXISTS usage_rollup_hourly_after_insert")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS usage_rollup_hourly_add()")
    op.drop_index(op.f("ix_dashboard_sessions_expires_at"), table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")
    op.drop_table("usage_rollup_hourly")
