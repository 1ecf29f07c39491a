"""api_keys.expires_at: a key may be created to stop working at a set time

Revision ID: 0010_key_expiry
Revises: 0009_rollup_tenant_index
Create Date: 2026-11-25 06:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_key_expiry"
down_revision: str | None = "0009_rollup_tenant_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("expires_at")
