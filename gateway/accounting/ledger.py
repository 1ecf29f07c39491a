"""LedgerWriter: one row per request, spooled durably on the request path, written in batches.

`submit()` costs one `write` syscall; a background task rotates the spool every
`flush_interval_s`, inserts the closed segments' rows with a multi-row `INSERT ... ON CONFLICT
DO NOTHING RETURNING id` and, in the same transaction, settles budget counters for the rows
that were new. Replaying a segment twice therefore neither duplicates a row nor double-counts
spend. While the database is down the segments stay on disk and are retried with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import or_, text, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.accounting.budgets import add_spend, counter_starts, release_reserved
from gateway.accounting.settling import Settling
from gateway.accounting.spool import LedgerSpool, database_key
from gateway.db.models import ApiKey, UsageLedger, table
from gateway.db.session import upsert_insert

log = logging.getLogger("thriftgate.ledger")

LEDGER_COLUMNS = frozenset(c.name for c in table(UsageLedger).columns)
MONEY_COLUMNS = (
    "cost_usd",
    "counterfactual_cost_usd",
    "saved_cache_usd",
    "saved_compression_usd",
    "saved_routing_usd",
)
# SQLSTATE classes that say the database refuses writes as a whole, not this row: connection
# (08), read-only transaction (25), rollback (40: serialization, deadlock), insufficient
# resources (53: disk full), operator intervention (57: shutting down), system/IO error (58), XX.
OUTAGE_SQLSTATE_CLASSES = frozenset({"08", "25", "40", "53", "57", "58", "XX"})
# What a row the database will never take raises (a value out of a column's range...).
ROW_ERRORS = (DBAPIError, KeyError, ValueError, TypeError, OverflowError)
WAKE_AT_PENDING_ROWS = 500  # spooled rows that wake the writer before its flush interval
# asyncpg allows 32767 bind parameters per statement; ~35 columns a row.
MAX_ROWS_PER_STATEMENT = 256  # a power of two; 256 x ~35 columns is far under 32767


class LedgerWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        spool_dir: Path,
        *,
        flush_interval_s: float = 0.1,
        settling: Settling | None = None,
    ) -> None:
        self.engine = engine
        self.spool = LedgerSpool(spool_dir, database_key(engine.url))
        for key, rows in self.spool.foreign_rows().items():
            log.warning(
                "spool %s holds %d ledger rows of another database (key %s): left for a gateway "
                "on that database to replay",
                spool_dir,
                rows,
                key,
            )
        # what finished requests will release from their reservations once their rows land
        self.settling = settling if settling is not None else Settling()
        self.settling.flush_interval_s = flush_interval_s
        self.flush_interval_s = flush_interval_s
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._stopping = False
        self.rows_written = 0
        self.db_errors = 0
        self.rows_rejected = 0
        self.healthy = True
        # rows the spool's disk refused (full, read-only): held here until it or the database
        # takes them, so a client's request is never failed or unbilled for it
        self._held: list[dict[str, Any]] = []

    def submit(self, row: dict[str, Any]) -> None:
        """Spool a row durably. Call before the response's last byte is sent."""
        try:
            self.spool.append(row)
        except OSError as exc:
            if not self._held:
                log.error("ledger: the spool refuses writes (%s); holding rows in memory", exc)
            self._held.append(row)
            self._wake.set()
        else:
            if self.spool.pending >= WAKE_AT_PENDING_ROWS:
                self._wake.set()
        if row.get("_period_start"):
            credit = Decimal(row.get("_reserved_usd") or 0) - Decimal(row.get("cost_usd") or 0)
            self.settling.add(row["id"], (row["tenant_id"], row["_period_start"]), credit)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ledger-writer")

    async def _run(self) -> None:
        backoff = self.flush_interval_s
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            self._wake.clear()
            try:
                await self.flush()
                backoff = self.flush_interval_s
                self.healthy = True
            except Exception as exc:  # DB down or transient: keep the segments, retry later
                self.db_errors += 1
                self.healthy = False
                backoff = min(max(backoff * 2, 0.5), 5.0)
                log.warning("ledger flush failed (%s); rows stay spooled", type(exc).__name__)

    async def flush(self) -> int:
        """Write every closed (and the current) segment to the database; returns rows inserted."""
        async with self._lock:
            written = await self._flush_held()
            stuck: OSError | None = None
            try:
                self.spool.rotate()
            except OSError as exc:  # no new segment: the open one keeps taking rows
                stuck = exc
            for segment in self.spool.closed_segments():
                rows = list(LedgerSpool.read(segment))
                if rows:
                    # the rows' credits go just before the write settles them in the database
                    taken = self.settling.take(str(r.get("id")) for r in rows)
                    try:
                        written += await self._write_segment(segment, rows)
                    except Exception:
                        self.settling.restore(taken)
                        raise
                segment.unlink(missing_ok=True)
            self.rows_written += written
            if stuck is not None:
                raise stuck  # unhealthy, and retried with back-off
            return written

    async def _flush_held(self) -> int:
        """Rows the spool refused: back into the spool if it takes them now, else straight
        to the database (idempotent, like a segment)."""
        if not self._held:
            return 0
        held, self._held = self._held, []
        spooled = 0
        try:
            for row in held:
                self.spool.append(row)
                spooled += 1
        except OSError:
            rest = held[spooled:]
            taken: list[tuple[str, tuple[str, str], Decimal]] = []
            try:  # whatever fails, the rows go back to be held: nothing else has them
                taken = self.settling.take(str(r.get("id")) for r in rest)
                return await self._write(rest)
            except Exception:
                self.settling.restore(taken)
                self._held = rest + self._held
                raise
        return 0

    async def _write_segment(self, segment: Path, rows: list[dict[str, Any]]) -> int:
        """Write a segment in one transaction; if the database refuses it while up, row by row.

        A row the database will never take (a value out of a column's range) must neither
        block the ledger (retried forever as if the database were down) nor take the
        segment's good rows with it: those are written, the bad ones set aside.
        """
        try:
            return await self._write(rows)
        except ROW_ERRORS as exc:
            if await self._outage(exc):
                raise  # the database is down or read-only: keep the segment, retry later
            first_error = exc
        written, rejected = 0, []
        for row in rows:
            try:
                written += await self._write([row])
            except ROW_ERRORS as exc:
                if await self._outage(exc):
                    raise  # rows written so far are idempotent on replay
                rejected.append(row)
        self._quarantine(segment, rejected, first_error)
        return written

    async def _outage(self, exc: Exception) -> bool:
        """True when the error is the database's, not the row's: it is down, or up but
        refusing every write (a read-only file or transaction, a full disk), which a `SELECT 1`
        alone does not show."""
        if not isinstance(exc, DBAPIError):
            return False
        return write_outage(exc) or not await self._db_up()

    async def _db_up(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    def _quarantine(self, segment: Path, rows: list[dict[str, Any]], exc: Exception) -> None:
        target = self.spool.dir / "quarantine"
        target.mkdir(exist_ok=True)
        with open(target / segment.name, "ab") as fh:
            for row in rows:
                fh.write(orjson.dumps(row, default=str) + b"\n")
        self.rows_rejected += len(rows)
        log.error(
            "ledger: %d row(s) of %s refused by the database (%s); kept in %s",
            len(rows),
            segment.name,
            type(exc).__name__,
            target / segment.name,
        )

    async def _write(self, raw_rows: list[dict[str, Any]]) -> int:
        rows = [_decode(r) for r in raw_rows]
        inserted = 0
        async with self.engine.begin() as conn:
            start = 0
            for size in statement_sizes(len(rows)):
                chunk = rows[start : start + size]
                start += size
                new_ids = await self._insert(conn, chunk)
                inserted += len(new_ids)
                await self._settle(conn, [r for r in chunk if r["row"]["id"] in new_ids])
        return inserted

    async def _insert(self, conn: AsyncConnection, chunk: list[dict[str, Any]]) -> set[str]:
        tbl = table(UsageLedger)
        # executemany + RETURNING: SQLAlchemy batches it as "insertmanyvalues" with a cached
        # compiled statement (a literal multi-row VALUES would be recompiled every batch).
        stmt = (
            upsert_insert(conn.dialect.name, tbl)
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(tbl.c.id)
        )
        columns = sorted({k for r in chunk for k in r["row"]})
        params = [{c: r["row"].get(c) for c in columns} for r in chunk]
        result = await conn.execute(stmt, params)
        return {row[0] for row in result}

    async def _settle(self, conn: AsyncConnection, rows: Iterable[dict[str, Any]]) -> None:
        """Budget counters for the new rows of a budgeted tenant: the reservation comes off the
        counter (and generation) it went into; the cost goes into every counter it belongs to
        (its month's, its day's, the total: budgets.counter_starts), whichever period is in
        force, so switching periods never finds a counter behind the ledger."""
        # per tenant, period and the generation its reservations went into (budgets.py)
        released: dict[tuple[str, datetime, int | None], Decimal] = defaultdict(Decimal)
        spent: dict[tuple[str, datetime], Decimal] = defaultdict(Decimal)
        last_used: dict[str, datetime] = {}
        for r in rows:
            row = r["row"]
            if r["period_start"] is not None:
                released[(row["tenant_id"], r["period_start"], r["reserve_epoch"])] += r[
                    "reserved_usd"
                ]
                for start in counter_starts(row["created_at"]):
                    spent[(row["tenant_id"], start)] += row["cost_usd"]
            key_id = row.get("key_id")
            if key_id and (key_id not in last_used or row["created_at"] > last_used[key_id]):
                last_used[key_id] = row["created_at"]
        # one counter after the other in key order, so concurrent writers lock counter rows in
        # the same order (no deadlock)
        counters = sorted(set(spent) | {(t, s) for t, s, _ in released})
        for tenant_id, start in counters:
            if (tenant_id, start) in spent:
                await add_spend(conn, tenant_id, start, spent[(tenant_id, start)])
            for (t, s, epoch), amount in sorted(
                released.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or 0)
            ):
                if (t, s) == (tenant_id, start):
                    await release_reserved(conn, tenant_id, start, amount, epoch)
        keys = table(ApiKey)
        for key_id, when in sorted(last_used.items()):
            # never back: rows replayed late (a spool after an outage, another replica's
            # backlog) are older than what a newer row already said
            await conn.execute(
                update(keys)
                .where(
                    keys.c.id == key_id,
                    or_(keys.c.last_used_at.is_(None), keys.c.last_used_at < when),
                )
                .values(last_used_at=when)
            )

    async def aclose(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        try:
            await asyncio.wait_for(self.flush(), timeout=10)
        except Exception as exc:
            log.warning("final ledger flush failed (%s); rows stay spooled", type(exc).__name__)
        if self._held:
            log.error("ledger: %d row(s) neither spooled nor written are lost", len(self._held))
        self.spool.close()


def write_outage(exc: DBAPIError) -> bool:
    if isinstance(exc, OperationalError):  # SQLite: read-only, disk full, locked, I/O error
        return True
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return isinstance(state, str) and state[:2] in OUTAGE_SQLSTATE_CLASSES


def statement_sizes(n: int) -> list[int]:
    """Split `n` rows into power-of-two statements of at most MAX_ROWS_PER_STATEMENT rows.

    Every distinct row count is a distinct SQL text, and asyncpg keeps a prepared statement
    (with its parameter types: ~35 per row) per text on every pooled connection: arbitrary
    batch sizes grew the gateway's memory by ~1 KB per request until those caches filled.
    Powers of two bound the shapes to ten.
    """
    sizes = []
    while n > 0:
        size = min(MAX_ROWS_PER_STATEMENT, 1 << (n.bit_length() - 1))
        sizes.append(size)
        n -= size
    return sizes


def _decode(raw: dict[str, Any]) -> dict[str, Any]:
    """Spool JSON -> column values (Decimals and datetimes restored) plus settlement info."""
    row = {k: v for k, v in raw.items() if k in LEDGER_COLUMNS}
    for col in MONEY_COLUMNS:
        row[col] = Decimal(str(row.get(col) or "0"))
    row["created_at"] = datetime.fromisoformat(row["created_at"])
    period = raw.get("_period_start")
    return {
        "row": row,
        "reserved_usd": Decimal(str(raw.get("_reserved_usd") or "0")),
        "period_start": datetime.fromisoformat(period) if period else None,
        # absent in rows spooled before reservations had generations
        "reserve_epoch": raw.get("_reserve_epoch"),
    }
