"""usage_rollup_{hourly,daily}: an index on (tenant_id, bucket) for one tenant's figures

The primary key leads with the bucket, so a tenant's page scanned every rollup row of its
window (480k rows over 90 days at 20k tenants: 125 ms a query, three a page).

Revision ID: 0009_rollup_tenant_index
Revises: 0008_budget_alerts
Create Date: 2026-11-25 06:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009_rollup_tenant_index"
down_revision: str | None = "0008_budget_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("usage_rollup_hourly", "usage_rollup_daily")


def upgrade() -> None:
    for name in TABLES:
        op.create_index(f"ix_{name}_tenant_bucket", name, ["tenant_id", "bucket"])


def downgrade() -> None:
    for name in TABLES:
        op.drop_index(f"ix_{name}_tenant_bucket", table_name=name)
