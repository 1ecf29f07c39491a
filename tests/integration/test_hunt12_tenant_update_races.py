"""Two administrators changing one tenant at once: neither change is lost, and a change racing
the tenant's deletion is refused rather than written onto the deleted tenant.

Each test holds one change open in a transaction (what an admin's PATCH is, mid-commit), starts
the other, waits until Postgres shows it waiting for the tenant's row, then commits the first."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.accounting import tenant_deletion, tenants
from gateway.errors import Conflict
from tests.support.servers import create_database, drop_database

pytestmark = pytest.mark.integration


@pytest.fixture
def db() -> Iterator[str]:
    url = create_database("h127")
    migrate = cli("migrate", db=url)
    assert migrate.returncode == 0, migrate.stderr
    yield url
    drop_database(url)


def cli(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env={**os.environ, "THRIFTGATE_DATABASE_URL": db},
        capture_output=True,
        text=True,
        timeout=120,
    )


def dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def until_waiting_on_a_lock(conn: asyncpg.Connection) -> None:
    """Until another session of this database waits for a row lock (polls pg_locks)."""
    for _ in range(600):
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE NOT l.granted AND a.datname = current_database()"
        )
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the second change never waited for the first")


def test_a_cli_cap_change_keeps_a_flag_an_admin_set_meanwhile(db: str) -> None:
    tid = cli("tenant", "create", "acme", db=db).stdout.strip()

    async def go() -> subprocess.CompletedProcess[str]:
        conn = await asyncpg.connect(dsn(db))
        try:
            tx = conn.transaction()
            await tx.start()
            await conn.execute(  # the admin's PATCH {"flags": {"cache": false}}, committing
                "UPDATE tenants SET flags = $1::json WHERE id = $2", '{"cache": false}', tid
            )
            env = {**os.environ, "THRIFTGATE_DATABASE_URL": db}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.cli", "tenant", "update", "acme",
                "--max-concurrent", "4", env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            watcher = await asyncpg.connect(dsn(db))
            try:
                await until_waiting_on_a_lock(watcher)
            finally:
                await watcher.close()
            await tx.commit()
            out, err = await proc.communicate()
            return subprocess.CompletedProcess([], proc.returncode or 0, out.decode(), err.decode())
        finally:
            await conn.close()

    done = asyncio.run(go())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["flags"] == {"cache": False, "max_concurrent_requests": 4}


def test_a_change_racing_the_deletion_is_refused_not_written_onto_the_deleted_tenant(
    db: str,
) -> None:
    tid = cli("tenant", "create", "acme", db=db).stdout.strip()

    async def go() -> None:
        engine = create_async_engine(db)
        try:
            async with engine.begin() as conn:  # the deletion, committing
                await tenant_deletion._remove(
                    conn, tid, tenant_deletion.deleted_name("acme", tid), notify=False
                )
                patch = asyncio.create_task(
                    tenants.update_tenant(engine, tid, {"name": "acme", "budget_usd": 5})
                )
                watcher = await asyncpg.connect(dsn(db))
                try:
                    await until_waiting_on_a_lock(watcher)
                finally:
                    await watcher.close()
            with pytest.raises(Conflict):
                await patch
            row = await tenants.get_tenant(engine, tid)
            assert row["deleted_at"] is not None
            assert row["name"] == f"acme (deleted {tid})" and row["budget_usd"] is None
        finally:
            await engine.dispose()

    asyncio.run(go())
