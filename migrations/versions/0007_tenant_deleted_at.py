"""tenants.deleted_at: a deleted tenant keeps its ledger rows; its keys, cache and items go

Revision ID: 0007_tenant_deleted_at
Revises: 0006_response_items
Create Date: 2026-11-25 02:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_tenant_deleted_at"
down_revision: str | None = "0006_response_items"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("deleted_at")
