"""Retention: deleting what the gateway no longer needs, so a year of use does not grow its
tables (and the embedded SQLite file) without bound.

- `usage_ledger`: raw per-request rows older than `THRIFTGATE_LEDGER_RETENTION_DAYS` (off by
  default: every row is kept), oldest first. Totals stay right after pruning: the daily rollup
  (migration 0003, kept by a trigger on every insert) is never pruned, and the dashboard,
  `/admin/spend` (reports.kept_from tells where the ledger's rows start) and a budget counter
  created later (budgets.ensure_counter) read the rollups. What is gone is the rows themselves:
  the request log, the CSV export and latency percentiles of those days.
- `usage_rollup_hourly` older than `THRIFTGATE_ROLLUP_HOURLY_RETENTION_DAYS` (off by default;
  at least the ledger's days): where tenants are many and each sends few requests, it holds
  nearly a row per request. Before it, reports have whole days only.
- `budget_counters` and `budget_alerts` of periods that ended before last month (a counter per
  budgeted tenant per day, read by nothing once its day is over; an alert is sent only while
  its period lasts), always.
- `cache_purges` older than the longest cache TTL and a day (a replica applies them at start
  to rows written before the purge, which have expired by then), always.

Deletes run in batches, each its own short transaction, so Postgres never holds a long lock on
the ledger and SQLite's writers wait at most one batch; on Postgres one replica prunes at a time
(an advisory lock each batch takes; the others skip their turn). On SQLite, with
`auto_vacuum=INCREMENTAL` (new databases), the freed pages go back to the file system after each
run; `thriftgate db prune --vacuum` rebuilds an older file so that it does.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.budgets import EPOCH
from gateway.cache.policy import MAX_TTL_S
from gateway.db.models import (
    BudgetAlert,
    BudgetCounter,
    CachePurge,
    UsageLedger,
    UsageRollupHourly,
    as_utc,
    table,
)
from gateway.db.session import FailureLog

log = logging.getLogger("thriftgate.retention")

BATCH_ROWS = 5_000
# SQLite has one writer: a batch holds every other write (the ledger's flush) while it runs,
# 54 ms for 1,000 rows where 5,000 took 212 ms (a 1M-row file)
SQLITE_BATCH_ROWS = 1_000
PRUNE_INTERVAL_S = 3_600.0
# Free pages a SQLite file made before auto_vacuum holds, that pruning cannot give back and a
# warning names: a quarter of the file, and a megabyte
FREE_WARN_SHARE = 0.25
VACUUM_STEP_PAGES = 1_000
VACUUM_STEP_PAUSE_S = 0.05  # between steps: the writers' turn
FREE_WARN_BYTES = 1_000_000
# A purge record hides rows written while the purge ran from every replica's start-up load:
# it is kept until such a row has expired, at the longest cache TTL
PURGE_RECORD_DAYS = MAX_TTL_S // 86_400 + 1


def ledger_horizon(retention_days: int | None, now: datetime | None = None) -> datetime | None:
    """The start (a UTC midnight) of the oldest day whose ledger rows are kept; None: all are.
    Rows before it may be pruned, so only the rollups answer for that time."""
    if not retention_days:
        return None
    now = (now or datetime.now(UTC)).astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=retention_days)


def counters_horizon(now: datetime) -> datetime:
    """Counters of periods starting before last month's first day are past use."""
    first = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first - timedelta(days=1)).replace(day=1)


@dataclass
class PruneResult:
    deleted: dict[str, int] = field(default_factory=dict)
    ledger_before: datetime | None = None
    hourly_before: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        def iso(ts: datetime | None) -> str | None:
            return ts.isoformat() if ts else None

        return {
            "deleted": dict(self.deleted),
            "ledger_pruned_before": iso(self.ledger_before),
            "hourly_rollup_pruned_before": iso(self.hourly_before),
        }


# Postgres: one replica prunes at a time (each batch takes it; the others stop)
_PRUNING = text("SELECT pg_try_advisory_xact_lock(7235931148250611826)")


async def _delete_oldest(engine: AsyncEngine, horizon: datetime, batch: int) -> int:
    """Delete the ledger's rows before `horizon`, the oldest `batch` of them per transaction:
    at every moment the ledger then holds every row from its first one on, which is how the
    reports tell where the rollups must answer (reports.kept_from)."""
    ledger = table(UsageLedger)
    total = 0
    while True:
        chosen = (
            select(ledger.c.id)
            .where(ledger.c.created_at < horizon)
            .order_by(ledger.c.created_at)
            .limit(batch)
        )
        async with engine.begin() as conn:
            if engine.dialect.name == "postgresql" and not (await conn.execute(_PRUNING)).scalar():
                return total  # another replica is at it
            result = await conn.execute(
                delete(ledger).where(ledger.c.id.in_(chosen.scalar_subquery()))
            )
        n = int(result.rowcount or 0)
        total += n
        if n < batch:
            return total
        await asyncio.sleep(0)  # let the requests this process serves run between batches


async def _delete_hourly_before(engine: AsyncEngine, horizon: datetime) -> int:
    """Delete hourly rollup rows before `horizon`, one day of buckets per transaction (the
    table's key has no single column to batch by; a day is one row per tenant, model and
    deployment that was used in each of its hours)."""
    hourly = table(UsageRollupHourly)
    total = 0
    while True:
        async with engine.begin() as conn:
            oldest = (
                await conn.execute(
                    select(func.min(hourly.c.bucket)).where(hourly.c.bucket < horizon)
                )
            ).scalar()
            if oldest is None:
                return total
            day = as_utc(oldest).replace(hour=0, minute=0, second=0, microsecond=0)
            until = min(day + timedelta(days=1), horizon)
            result = await conn.execute(delete(hourly).where(hourly.c.bucket < until))
        total += int(result.rowcount or 0)
        await asyncio.sleep(0)


def _prunable(result: PruneResult, now: datetime) -> dict[str, tuple[Any, Any]]:
    """Each table retention prunes: (the table, what of it goes)."""
    out: dict[str, tuple[Any, Any]] = {}
    if result.ledger_before is not None:
        ledger = table(UsageLedger)
        out[ledger.name] = (ledger, ledger.c.created_at < result.ledger_before)
    if result.hourly_before is not None:
        hourly = table(UsageRollupHourly)
        out[hourly.name] = (hourly, hourly.c.bucket < result.hourly_before)
    for model in (BudgetCounter, BudgetAlert):
        rows = table(model)
        out[rows.name] = (
            rows,
            (rows.c.period_start < counters_horizon(now))
            & (rows.c.period_start != EPOCH),  # the total's period never ends
        )
    purges = table(CachePurge)
    out[purges.name] = (purges, purges.c.purged_at < now - timedelta(days=PURGE_RECORD_DAYS))
    return out


async def prunable(
    engine: AsyncEngine,
    *,
    ledger_retention_days: int | None,
    hourly_rollup_retention_days: int | None = None,
    now: datetime | None = None,
) -> PruneResult:
    """What `prune` would delete now, counted (`thriftgate db prune --dry-run`)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    result = PruneResult(
        ledger_before=ledger_horizon(ledger_retention_days, now),
        hourly_before=ledger_horizon(hourly_rollup_retention_days, now),
    )
    async with engine.connect() as conn:
        for name, (rows, where) in _prunable(result, now).items():
            count = select(func.count()).select_from(rows).where(where)
            result.deleted[name] = int((await conn.execute(count)).scalar() or 0)
    return result


async def prune(
    engine: AsyncEngine,
    *,
    ledger_retention_days: int | None,
    hourly_rollup_retention_days: int | None = None,
    now: datetime | None = None,
    batch_rows: int | None = None,
) -> PruneResult:
    """Delete what retention allows (see the module's docstring); return what went."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    result = PruneResult(
        ledger_before=ledger_horizon(ledger_retention_days, now),
        hourly_before=ledger_horizon(hourly_rollup_retention_days, now),
    )
    if result.ledger_before is not None:
        result.deleted["usage_ledger"] = await _delete_oldest(
            engine,
            result.ledger_before,
            batch_rows or (SQLITE_BATCH_ROWS if engine.dialect.name == "sqlite" else BATCH_ROWS),
        )
    if result.hourly_before is not None:
        result.deleted["usage_rollup_hourly"] = await _delete_hourly_before(
            engine, result.hourly_before
        )
    small = {"budget_counters", "budget_alerts", "cache_purges"}  # one statement each
    async with engine.begin() as conn:
        for name, (rows, where) in _prunable(result, now).items():
            if name in small:
                gone = await conn.execute(delete(rows).where(where))
                result.deleted[name] = int(gone.rowcount or 0)
    if engine.dialect.name == "sqlite":
        await give_back_space(engine)
    return result


async def give_back_space(engine: AsyncEngine) -> None:
    """SQLite: return free pages to the file system (an `auto_vacuum=INCREMENTAL` file) and
    checkpoint the write-ahead log. A file made before this release keeps its free pages: when
    they are many, a warning says how to shrink it."""
    mode, free, pages, page = await _pragmas(engine)
    before = free + 1
    while mode and 0 < free < before:
        # a step at a time: each holds the one writer (154 MB at once took 4.9 s, and a
        # budget reservation waited that long; 1,000 pages a step, 0.39 s at most)
        await _sqlite_script(engine, f"PRAGMA incremental_vacuum({VACUUM_STEP_PAGES});")
        before = free
        mode, free, pages, page = await _pragmas(engine)
        await asyncio.sleep(VACUUM_STEP_PAUSE_S)
    # (No TRUNCATE checkpoint here: waiting for a long reader, a CSV export, it holds every
    # writer meanwhile; the WAL shrinks to journal_size_limit at its next reset.)
    await _sqlite_script(engine, "PRAGMA wal_checkpoint(PASSIVE);")
    if not mode and free * page > FREE_WARN_BYTES and free > FREE_WARN_SHARE * pages:
        log.warning(
            "the database file holds %d MB of free pages that pruning cannot give back (it "
            "was made before auto_vacuum); run `thriftgate db prune --vacuum` once to shrink it",
            free * page // 1_000_000,
        )


async def _pragmas(engine: AsyncEngine) -> list[int]:
    """SQLite's auto_vacuum mode, free pages, pages and page size."""
    out: list[int] = []
    async with engine.connect() as conn:
        for name in ("auto_vacuum", "freelist_count", "page_count", "page_size"):
            out.append(int((await conn.exec_driver_sql(f"PRAGMA {name}")).scalar() or 0))
    return out


async def _sqlite_script(engine: AsyncEngine, script: str) -> None:
    """Run statements through the driver's executescript: it steps each one to its end (a
    plain execute steps once, and `incremental_vacuum` frees one page per step), outside any
    transaction (VACUUM refuses to run in one)."""
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection  # aiosqlite's Connection
        try:
            await driver.executescript(script)
        except sqlite3.Error as exc:  # as SQLAlchemy's own (the CLI says it in one line)
            raise OperationalError(script, None, exc) from exc


async def vacuum(engine: AsyncEngine) -> None:
    """Rebuild the database file (SQLite: the file shrinks, and turns incremental so later
    prunes shrink it too) or reclaim dead rows for reuse (Postgres: plain VACUUM ANALYZE of
    the pruned tables, which takes no lock that stops reads or writes)."""
    if engine.dialect.name == "sqlite":
        await _sqlite_script(
            engine, "PRAGMA auto_vacuum=INCREMENTAL; VACUUM; PRAGMA wal_checkpoint(TRUNCATE);"
        )
        return
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        for name in ("usage_ledger", "budget_counters", "cache_purges"):
            await conn.execute(text(f"VACUUM (ANALYZE) {name}"))


class LedgerPruner:
    """Prunes every `interval_s` (with jitter, so replicas started together do not line up)
    while the gateway runs; a failure is logged once and retried at the next run."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        ledger_retention_days: int | None,
        hourly_rollup_retention_days: int | None = None,
        interval_s: float = PRUNE_INTERVAL_S,
    ) -> None:
        self.engine = engine
        self.ledger_retention_days = ledger_retention_days
        self.hourly_rollup_retention_days = hourly_rollup_retention_days
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._log = FailureLog(log, "pruning old rows")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention-pruner")

    async def _run(self) -> None:
        # not at the same instant on replicas started together
        await asyncio.sleep(random.uniform(0.0, min(60.0, self.interval_s)))
        while True:
            try:
                result = await prune(
                    self.engine,
                    ledger_retention_days=self.ledger_retention_days,
                    hourly_rollup_retention_days=self.hourly_rollup_retention_days,
                )
            except Exception:
                self._log.failed()
            else:
                self._log.succeeded()
                if any(result.deleted.values()):
                    log.info("pruned %s", result.as_dict())
            await asyncio.sleep(self.interval_s * random.uniform(0.9, 1.1))

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
