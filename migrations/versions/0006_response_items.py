"""response_items: output items of /v1/responses replies, so item references resolve

Revision ID: 0006_response_items
Revises: 0005_reservation_epochs
Create Date: 2026-11-24 21:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_response_items"
down_revision: str | None = "0005_reservation_epochs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "response_items",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("item", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "item_id", name=op.f("pk_response_items")),
    )
    op.create_index("ix_response_items_expires", "response_items", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_response_items_expires", table_name="response_items")
    op.drop_table("response_items")
