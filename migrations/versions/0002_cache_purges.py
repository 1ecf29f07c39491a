"""cache: purge log for replicas and an index on cache_entries.expires_at

Revision ID: 0002_cache
Revises: 0001
Create Date: 2026-11-24 01:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_cache"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cache_purges",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cache_purges")),
    )
    op.create_index("ix_cache_purges_purged", "cache_purges", ["purged_at"], unique=False)
    op.create_index("ix_cache_entries_expires", "cache_entries", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_cache_entries_expires", table_name="cache_entries")
    op.drop_index("ix_cache_purges_purged", table_name="cache_purges")
    op.drop_table("cache_purges")
