"""The ledger keeps writing when the finished requests' budget credits of a tenant cancel out.

Each finished row credits the budget check with what its reservation exceeded its cost
(settling.py): positive for most rows, negative for one that cost more than it reserved, or
that reserved nothing because the budget store was down (fail-open). When the credits still
waiting for a flush summed to exactly zero, the bookkeeping forgot the tenant's entry while
rows of it were left, and the writer's next `take` raised KeyError: every later flush failed
the same way, so no ledger row reached the database until a restart ("ledger flush failed
(KeyError); rows stay spooled", seen on SQLite after its disk filled and was freed), and rows
held in memory while the spool's disk was full were dropped outright.
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
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.accounting import spool as spool_module
from gateway.accounting.budgets import period_start
from gateway.accounting.ledger import LedgerWriter
from gateway.db.migrate import upgrade_head_sync
from gateway.db.models import Tenant, table

pytestmark = pytest.mark.integration

TENANT = "t-credits"


def row(request_id: str, reserved_usd: str, cost_usd: str) -> dict[str, Any]:
    """A ledger row as the account stage spools it, with its reservation's settlement fields."""
    return {
        "id": uuid.uuid4().hex,
        "request_id": request_id,
        "tenant_id": TENANT,
        "model": "m",
        "status_code": 200,
        "cost_usd": cost_usd,
        "created_at": datetime.now(UTC).isoformat(),
        "_period_start": period_start("monthly").isoformat(),
        "_reserved_usd": reserved_usd,
    }


# Credits +0.001, -0.001 (reserved nothing: the budget store was down), +0.001: once the first
# row is taken, the two left sum to zero.
ROWS = (("a", "0.002", "0.001"), ("b", "0", "0.001"), ("c", "0.002", "0.001"))


@pytest.mark.parametrize("spool_full", [False, True], ids=["spooled", "held-in-memory"])
def test_rows_whose_credits_cancel_out_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spool_full: bool
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    upgrade_head_sync(url)
    real_write = os.write

    def full_disk(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    async def go() -> None:
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.execute(insert(table(Tenant)).values(id=TENANT, name=TENANT))
        writer = LedgerWriter(engine, tmp_path / "spool")
        if spool_full:
            monkeypatch.setattr(spool_module.os, "write", full_disk)
        for request_id, reserved, cost in ROWS:
            writer.submit(row(request_id, reserved, cost))
        try:
            assert await writer.flush() == 3
        finally:
            monkeypatch.setattr(spool_module.os, "write", real_write)
            await writer.aclose()
            await engine.dispose()

    asyncio.run(go())
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        stored = {r[0] for r in db.execute("SELECT request_id FROM usage_ledger")}
    assert stored == {"a", "b", "c"}
