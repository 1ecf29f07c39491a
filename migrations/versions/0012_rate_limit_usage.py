"""rate_limit_usage: each gateway process's per-tenant RPM/TPM use and requests in flight

Rate limits were counted per process: 3 replicas x 2 workers let a tenant reach 6x its RPM.
Each process now writes its own counts here about once a second (one statement a tick, no
round trip per request) and admits against its own counts plus the other processes' last
written ones (gateway/pipeline/limits_sync.py).

Revision ID: 0012_rate_limit_usage
Revises: 0011_budget_alert_leases
Create Date: 2026-11-25 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_rate_limit_usage"
down_revision: str | None = "0011_budget_alert_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_usage",
        sa.Column("process_id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(32), primary_key=True),
        sa.Column("requests", sa.Float(), nullable=False, server_default="0"),
        sa.Column("tokens", sa.Float(), nullable=False, server_default="0"),
        sa.Column("in_flight", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_limit_usage")
