"""No ledger row is lost to a spool disk that fills in the middle of a row.

A full disk can take part of a write (a short write) instead of refusing it: the spool ignored
the count, so the row was neither spooled whole nor held in memory, and the next row was
appended to its torn half: the reader skipped the glued line, and both rows were lost (SQLite
and the spool on a full 8 MB tmpfs: 2 of 923 answered requests had no ledger row).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.accounting import spool as spool_module
from gateway.accounting.ledger import LedgerWriter
from gateway.db.migrate import upgrade_head_sync

pytestmark = pytest.mark.integration


def row(request_id: str) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "request_id": request_id,
        "tenant_id": "t-short-write",
        "model": "m",
        "status_code": 200,
        "cost_usd": "0.001",
        "created_at": datetime.now(UTC).isoformat(),
    }


def test_a_row_the_spool_takes_in_part_is_still_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    upgrade_head_sync(url)
    real_write = os.write

    def fills_up(fd: int, data: bytes) -> int:
        return real_write(fd, data[: len(data) // 2])

    async def go() -> None:
        engine = create_async_engine(url)
        writer = LedgerWriter(engine, tmp_path / "spool")
        monkeypatch.setattr(spool_module.os, "write", fills_up)
        writer.submit(row("torn"))  # never raises into the request
        monkeypatch.setattr(spool_module.os, "write", real_write)
        writer.submit(row("next"))
        try:
            assert await writer.flush() == 2
        finally:
            await writer.aclose()
            await engine.dispose()

    asyncio.run(go())
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        stored = {r[0] for r in db.execute("SELECT request_id FROM usage_ledger")}
    assert stored == {"torn", "next"}
