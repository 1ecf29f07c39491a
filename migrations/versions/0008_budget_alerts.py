"""budget_alerts: the budget thresholds each tenant crossed per period, and their delivery

Revision ID: 0008_budget_alerts
Revises: 0007_tenant_deleted_at
Create Date: 2026-11-25 06:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_budget_alerts"
down_revision: str | None = "0007_tenant_deleted_at"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(20, 10)


def upgrade() -> None:
    op.create_table(
        "budget_alerts",
        sa.Column(
            "tenant_id",
            sa.String(32),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("period_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("threshold_pct", sa.Integer(), primary_key=True),
        sa.Column("budget_usd", MONEY, nullable=False),
        sa.Column("spent_usd", MONEY, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(200), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("budget_alerts")
