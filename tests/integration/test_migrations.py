"""Alembic: upgrade from empty, downgrade to base and back, and no drift from the models."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.db.migrate import downgrade_base, upgrade_head
from gateway.db.models import Base
from gateway.db.session import create_engine

pytestmark = pytest.mark.integration


def _drift(url: str) -> list:
    async def go() -> list:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda c: compare_metadata(
                        MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata
                    )
                )
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _tables(url: str) -> set[str]:
    async def go() -> set[str]:
        from sqlalchemy import inspect

        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:
                return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _cycle(url: str) -> None:
    asyncio.run(upgrade_head(url))
    assert {
        "tenants",
        "api_keys",
        "usage_ledger",
        "budget_counters",
        "cache_entries",
        "deployment_stats",
    } <= _tables(url)
    assert _drift(url) == []
    asyncio.run(downgrade_base(url))
    assert _tables(url) <= {"alembic_version"}
    asyncio.run(upgrade_head(url))
    assert _drift(url) == []


def test_postgres_upgrade_downgrade_and_no_drift(fresh_pg_url):
    _cycle(fresh_pg_url)


def test_sqlite_upgrade_downgrade_and_no_drift(tmp_path: Path):
    _cycle(f"sqlite+aiosqlite:///{tmp_path / 'tg.db'}")
