"""budget_alerts.next_attempt_at / failures: an undelivered alert is sent by any replica

An alert's row said whether it was delivered, but only the process that claimed it knew to
send it again: one that died before delivering (SIGKILL, OOM, a node lost) left it unsent for
good. `next_attempt_at` is when the alert may be taken (again) by any replica: a claim holds it
for a lease while its owner delivers, a failed delivery sets the pause before the next try;
NULL once delivered or given up. `failures` counts the failed deliveries (the pause doubles).
Undelivered rows written before this migration are due at once.

Revision ID: 0011_budget_alert_leases
Revises: 0010_key_expiry
Create Date: 2026-11-25 09:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_budget_alert_leases"
down_revision: str | None = "0010_key_expiry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("budget_alerts") as batch:
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))
    op.execute("UPDATE budget_alerts SET next_attempt_at = created_at WHERE delivered_at IS NULL")
    op.create_index(
        "ix_budget_alerts_due",
        "budget_alerts",
        ["next_attempt_at"],
        postgresql_where=sa.text("delivered_at IS NULL"),
        sqlite_where=sa.text("delivered_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_budget_alerts_due", table_name="budget_alerts")
    with op.batch_alter_table("budget_alerts") as batch:
        batch.drop_column("failures")
        batch.drop_column("next_attempt_at")
