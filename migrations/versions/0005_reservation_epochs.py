"""budgets: reservations in two generations, so a crashed process's reservations expire

Revision ID: 0005_reservation_epochs
Revises: 0004_rollup_energy
Create Date: 2026-11-24 13:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_reservation_epochs"
down_revision: str | None = "0004_rollup_energy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("budget_counters") as batch:
        batch.add_column(
            sa.Column(
                "reserved_prev_usd",
                sa.Numeric(precision=20, scale=10),
                server_default="0",
                nullable=False,
            )
        )
        batch.add_column(
            sa.Column("reserve_epoch", sa.BigInteger(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("budget_counters") as batch:
        batch.drop_column("reserve_epoch")
        batch.drop_column("reserved_prev_usd")
