"""dashboard: GPU energy in the usage rollups (joules, and the tokens and requests measured)

Only ledger rows whose `energy_joules` was measured (a local engine reading NVML) count, so
tokens per watt-hour never mixes in requests nobody measured. A second trigger keeps the new
columns; migration 0003's trigger and its columns are left as they are.

Revision ID: 0004_rollup_energy
Revises: 0003_dashboard
Create Date: 2026-11-25 03:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_rollup_energy"
down_revision: str | None = "0003_dashboard"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = {"usage_rollup_hourly": "hour", "usage_rollup_daily": "day"}
KEYS = "bucket, tenant_id, model, deployment"
# 0003's sums, NOT NULL without defaults: a rollup row this trigger creates starts them at 0
# (0003's trigger then adds its figures, in whichever order the two triggers fire).
OTHER_SUMS = (
    "requests, errors, cache_hits, dispatched, prompt_tokens, completion_tokens, cost_usd, "
    "counterfactual_cost_usd, saved_cache_usd, saved_compression_usd, saved_routing_usd, "
    "slo_met, slo_known, latency_ms_sum"
)
ZEROS = ", ".join("0" for _ in OTHER_SUMS.split(", "))
ENERGY = "energy_joules, energy_completion_tokens, energy_requests"
MEASURED = "energy_joules IS NOT NULL"


def _on_conflict(table: str) -> str:
    sets = ", ".join(f"{c} = {table}.{c} + EXCLUDED.{c}" for c in ENERGY.split(", "))
    return f"ON CONFLICT ({KEYS}) DO UPDATE SET {sets}"


def _pg_bucket(unit: str) -> str:
    return f"date_trunc('{unit}', created_at, 'UTC')"


def _sqlite_bucket(unit: str, column: str = "created_at") -> str:
    fmt = "%Y-%m-%d %H:00:00.000000" if unit == "hour" else "%Y-%m-%d 00:00:00.000000"
    return f"strftime('{fmt}', {column})"


def _upsert(table: str, source: str, bucket: str) -> str:
    """Measured rows of `source` summed into `table`'s energy columns, in key order."""
    return f"""
    INSERT INTO {table} ({KEYS}, {OTHER_SUMS}, {ENERGY})
    SELECT {bucket}, tenant_id, model, COALESCE(deployment, ''), {ZEROS},
           sum(energy_joules), COALESCE(sum(completion_tokens), 0), count(*)
    FROM {source}
    WHERE {MEASURED}
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    {_on_conflict(table)};"""


PG_FUNCTION = f"""
CREATE FUNCTION usage_rollup_energy_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN{"".join(_upsert(t, "new_rows", _pg_bucket(u)) for t, u in TABLES.items())}
    RETURN NULL;
END
$$;
"""
PG_TRIGGER = """
CREATE TRIGGER usage_rollup_energy_after_insert
    AFTER INSERT ON usage_ledger REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION usage_rollup_energy_add();
"""


def _sqlite_row_insert(table: str, unit: str) -> str:
    return f"""
    INSERT INTO {table} ({KEYS}, {OTHER_SUMS}, {ENERGY})
    VALUES ({_sqlite_bucket(unit, "NEW.created_at")}, NEW.tenant_id, NEW.model,
            COALESCE(NEW.deployment, ''), {ZEROS},
            NEW.energy_joules, NEW.completion_tokens, 1)
    {_on_conflict(table)};"""


SQLITE_TRIGGER = f"""
CREATE TRIGGER usage_rollup_energy_after_insert AFTER INSERT ON usage_ledger
WHEN NEW.{MEASURED}
BEGIN{"".join(_sqlite_row_insert(t, u) for t, u in TABLES.items())}
END;
"""


def upgrade() -> None:
    for table in TABLES:
        op.add_column(
            table, sa.Column("energy_joules", sa.Float(), nullable=False, server_default="0")
        )
        for column in ("energy_completion_tokens", "energy_requests"):
            op.add_column(
                table, sa.Column(column, sa.BigInteger(), nullable=False, server_default="0")
            )
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute(SQLITE_TRIGGER)
    else:
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)
    # Measured rows already in the ledger (an upgrade of a running install).
    for table, unit in TABLES.items():
        op.execute(
            _upsert(table, "usage_ledger", _sqlite_bucket(unit) if sqlite else _pg_bucket(unit))
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS usage_rollup_energy_after_insert")
    else:
        op.execute("DROP TRIGGER IF EXISTS usage_rollup_energy_after_insert ON usage_ledger")
        op.execute("DROP FUNCTION IF EXISTS usage_rollup_energy_add()")
    for table in TABLES:
        for column in ENERGY.split(", "):
            op.drop_column(table, column)
