"""The ledger loses no row when the database or the spool's disk refuses writes.

Real Postgres (a fresh database per test, migrated to head) and the real `LedgerWriter`:
- a database that answers `SELECT 1` but refuses every write (read-only) is an outage, not a
  bad row: the rows stay spooled and reach the table once it takes writes again;
- a spool directory that cannot create its next segment keeps the open one (no write through a
  closed descriptor), and a spool that refuses even appends holds rows in memory and writes
  them to the database directly.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.accounting import spool as spool_module
from gateway.accounting.ledger import LedgerWriter
from gateway.db.migrate import upgrade_head_sync
from tests.support.servers import create_database, drop_database, sql

pytestmark = pytest.mark.integration


@pytest.fixture
def db() -> Iterator[str]:
    url = create_database("tg_ledger")
    upgrade_head_sync(url)
    yield url
    drop_database(url)


def row(request_id: str) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "request_id": request_id,
        "tenant_id": "t-ledger",
        "model": "m",
        "status_code": 200,
        "cost_usd": "0.001",
        "created_at": datetime.now(UTC).isoformat(),
    }


def stored(url: str) -> set[str]:
    return {r["request_id"] for r in sql(url, "SELECT request_id FROM usage_ledger")}


def test_a_read_only_database_keeps_rows_spooled_until_it_takes_writes(
    db: str, tmp_path: Path
) -> None:
    async def go() -> None:
        read_only = create_async_engine(
            db, connect_args={"server_settings": {"default_transaction_read_only": "on"}}
        )
        writer = LedgerWriter(read_only, tmp_path)
        writer.submit(row("ro-1"))
        writer.submit(row("ro-2"))
        with pytest.raises(Exception, match="read-only"):
            await writer.flush()
        await writer.aclose()  # its final flush fails too; the rows stay in the spool
        await read_only.dispose()
        assert not (tmp_path / "quarantine").exists()

        writable = create_async_engine(db)
        again = LedgerWriter(writable, tmp_path)  # adopts the closed writer's segments
        assert await again.flush() == 2
        await again.aclose()
        await writable.dispose()

    asyncio.run(go())
    assert stored(db) == {"ro-1", "ro-2"}


def test_a_spool_that_cannot_rotate_keeps_writing_into_its_open_segment(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open
    refuse = {"on": False}

    def open_(path: Any, flags: int, mode: int = 0o777) -> int:
        if refuse["on"] and str(path).endswith(".jsonl"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, mode)

    async def go() -> None:
        engine = create_async_engine(db)
        writer = LedgerWriter(engine, tmp_path)
        writer.submit(row("rot-1"))
        refuse["on"] = True
        with pytest.raises(PermissionError):
            await writer.flush()  # no new segment: the open one stays open
        writer.submit(row("rot-2"))  # still a real file, not a recycled descriptor
        other = real_open(tmp_path / "unrelated", os.O_CREAT | os.O_WRONLY, 0o600)
        writer.submit(row("rot-3"))
        os.close(other)
        assert (tmp_path / "unrelated").read_bytes() == b""
        refuse["on"] = False
        assert await writer.flush() == 3
        await writer.aclose()
        await engine.dispose()

    monkeypatch.setattr(spool_module.os, "open", open_)
    asyncio.run(go())
    assert stored(db) == {"rot-1", "rot-2", "rot-3"}


def test_rows_the_spool_refuses_are_held_and_written_to_the_database(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def full_disk(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    async def go() -> None:
        engine = create_async_engine(db)
        writer = LedgerWriter(engine, tmp_path)
        monkeypatch.setattr(spool_module.os, "write", full_disk)
        writer.submit(row("full-1"))  # does not raise into the request
        writer.submit(row("full-2"))
        assert await writer.flush() == 2  # straight to the database
        monkeypatch.setattr(spool_module.os, "write", real_write)
        writer.submit(row("full-3"))
        assert await writer.flush() == 1
        await writer.aclose()
        await engine.dispose()

    asyncio.run(go())
    assert stored(db) == {"full-1", "full-2", "full-3"}


def test_a_row_replayed_late_does_not_move_a_keys_last_use_back(db: str, tmp_path: Path) -> None:
    """A key's `last_used_at` is its newest row's time: a row written later but created earlier
    (spooled through an outage, another replica's backlog) set it back (hunt10 h1)."""
    sql(db, "INSERT INTO tenants (id, name, budget_period, flags, created_at) "
        "VALUES ('t-ledger', 't-ledger', 'monthly', '{}', now())")  # fmt: skip
    sql(db, "INSERT INTO api_keys (id, tenant_id, hash, prefix, created_at) "
        "VALUES ('k1', 't-ledger', 'h', 'tg-', now())")  # fmt: skip
    newer = datetime(2026, 11, 24, 12, tzinfo=UTC)

    async def go() -> None:
        engine = create_async_engine(db)
        writer = LedgerWriter(engine, tmp_path)
        writer.submit(row("new") | {"key_id": "k1", "created_at": newer.isoformat()})
        await writer.flush()
        late = newer - timedelta(hours=3)
        writer.submit(row("late") | {"key_id": "k1", "created_at": late.isoformat()})
        await writer.flush()
        await writer.aclose()
        await engine.dispose()

    asyncio.run(go())
    assert stored(db) == {"new", "late"}
    assert sql(db, "SELECT last_used_at FROM api_keys WHERE id = 'k1'")[0][0] == newer
