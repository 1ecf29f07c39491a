"""Run Alembic migrations programmatically (`thriftgate migrate`, and `serve` on start)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from gateway.db.session import create_engine

ROOT = Path(__file__).resolve().parents[2]


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["database_url"] = database_url
    return cfg


async def upgrade_head(database_url: str) -> None:
    await _run(database_url, lambda cfg: command.upgrade(cfg, "head"))


async def upgrade_to(database_url: str, revision: str) -> None:
    """Upgrade to one revision (tests of a later migration upgrading a populated database)."""
    await _run(database_url, lambda cfg: command.upgrade(cfg, revision))


async def downgrade_base(database_url: str) -> None:
    await _run(database_url, lambda cfg: command.downgrade(cfg, "base"))


async def _run(database_url: str, fn) -> None:  # type: ignore[no-untyped-def]
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:

            def run(sync_conn) -> None:  # type: ignore[no-untyped-def]
                cfg = alembic_config(database_url)
                cfg.attributes["connection"] = sync_conn
                fn(cfg)

            await conn.run_sync(run)
            await conn.commit()
    finally:
        await engine.dispose()


def upgrade_head_sync(database_url: str) -> None:
    asyncio.run(upgrade_head(database_url))


async def check_writable(database_url: str) -> None:
    """Raise the database's own error if it cannot be written (a SQLite file the user cannot
    write, a read-only replica or transaction): one write, rolled back."""
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
            await conn.rollback()
    finally:
        await engine.dispose()


def check_writable_sync(database_url: str) -> None:
    asyncio.run(check_writable(database_url))
