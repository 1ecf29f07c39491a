"""Budgets: reserve an estimate before dispatch, settle the actual cost after.

Reservation is one atomic `UPDATE ... RETURNING` on the tenant's counter row for the period:
it succeeds while `spent + reserved < budget`, so concurrent requests overspend by at most
one request's estimate. Concurrent requests of one tenant share a statement (group commit,
see reservations.py) without loosening that bound.
Settlement runs in the ledger writer's batch transaction (see ledger.py).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.accounting.pricing import usd_text
from gateway.accounting.reservations import ReservationBatcher
from gateway.accounting.settling import Settling
from gateway.db.models import BudgetCounter, table
from gateway.db.session import upsert_insert
from gateway.errors import BudgetExceeded

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PERIODS = ("monthly", "daily", "total")


def period_start(period: str, now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    if period == "daily":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "total":
        return EPOCH
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def upsert_counter_delta(
    conn: AsyncConnection,
    tenant_id: str,
    start: datetime,
    *,
    spent_delta: Decimal,
    reserved_delta: Decimal,
) -> None:
    tbl = table(BudgetCounter)
    stmt = upsert_insert(conn.dialect.name, tbl).values(
        tenant_id=tenant_id,
        period_start=start,
        spent_usd=spent_delta,
        reserved_usd=max(reserved_delta, Decimal(0)),
        updated_at=datetime.now(UTC),
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["tenant_id", "period_start"],
        set_={
            "spent_usd": tbl.c.spent_usd + spent_delta,
            # Never below zero: a reservation lost in a crash must not go negative later.
            "reserved_usd": _greatest(conn, tbl.c.reserved_usd + reserved_delta),
            "updated_at": datetime.now(UTC),
        },
    )
    await conn.execute(stmt)


def _greatest(conn: AsyncConnection, expr):  # type: ignore[no-untyped-def]
    from sqlalchemy import func

    if conn.dialect.name == "sqlite":
        return func.max(expr, 0)
    return func.greatest(expr, 0)


class BudgetStoreUnavailable(Exception):
    """The budget store could not be reached; the limits stage applies the down policy."""


RESERVE_SQL = (
    "UPDATE budget_counters SET reserved_usd = reserved_usd + $1, updated_at = $2 "
    "WHERE tenant_id = $3 AND period_start = $4 AND spent_usd + reserved_usd + $6 < $5 "
    "RETURNING spent_usd"
)


class BudgetBook:
    """Reserve/settle against `budget_counters`; one DB round trip per reserving request.

    On Postgres the reservation goes through a small raw asyncpg pool with a prepared
    statement: profiling showed SQLAlchemy's per-execute overhead at ~14% of the gateway's
    CPU under load for this one statement. Everything else uses SQLAlchemy.
    """

    def __init__(self, engine: AsyncEngine, settling: Settling | None = None) -> None:
        self.engine = engine
        # finished requests' reservations not yet released in the table (settling.py)
        self.settling = settling if settling is not None else Settling()
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._known: set[tuple[str, datetime]] = set()
        # tenant -> (monotonic time to re-check, its settling credit at the refusal)
        self._exhausted: dict[str, tuple[float, Decimal]] = {}
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._batcher: ReservationBatcher[tuple[str, datetime]] = ReservationBatcher(
            self._reserve_statement, self._release
        )

    async def _raw_pool(self) -> asyncpg.Pool | None:
        if self.engine.dialect.name != "postgresql":
            return None
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    dsn = self.engine.url.set(drivername="postgresql").render_as_string(
                        hide_password=False
                    )
                    # reset=_no_reset: the default runs RESET ALL etc. on every release, an
                    # extra round trip per request (14% of CPU in a profile); this pool only
                    # ever runs one stateless statement.
                    # synchronous_commit off: a reservation is soft state (settlement clamps
                    # at zero), and waiting for the WAL flush on every admission cost ~0.5 ms
                    # per request at c=1 here. Ledger rows keep full durability.
                    self._pool = await asyncpg.create_pool(
                        dsn,
                        min_size=1,
                        max_size=16,
                        command_timeout=10,
                        reset=_no_reset,
                        server_settings={"synchronous_commit": "off"},
                    )
        return self._pool

    async def reserve(
        self, tenant_id: str, budget_usd: Decimal, period: str, amount: Decimal
    ) -> datetime:
        """Reserve `amount`; returns the period start. Raises BudgetExceeded when spent."""
        start = period_start(period)
        credit = self.settling.credit((tenant_id, start.isoformat()))
        refused = self._exhausted.get(tenant_id)
        if refused is not None and time.monotonic() < refused[0] and credit <= refused[1]:
            raise _exceeded(budget_usd)
        try:
            ok = await self._reserve(tenant_id, start, budget_usd, amount)
        except (SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise BudgetStoreUnavailable(type(exc).__name__) from exc
        if not ok:
            # Re-check at most every half second while exhausted, or as soon as a request of
            # the tenant finishes (its settlement may free room).
            self._exhausted[tenant_id] = (time.monotonic() + 0.5, credit)
            raise _exceeded(budget_usd)
        self._exhausted.pop(tenant_id, None)
        return start

    async def _reserve(
        self, tenant_id: str, start: datetime, budget_usd: Decimal, amount: Decimal
    ) -> bool:
        key = (tenant_id, start)
        if key not in self._known:
            async with self._autocommit.connect() as conn:
                await upsert_counter_delta(
                    conn, tenant_id, start, spent_delta=Decimal(0), reserved_delta=Decimal(0)
                )
            self._known.add(key)
        return await self._batcher.reserve(key, budget_usd, amount)

    async def _reserve_statement(
        self, key: tuple[str, datetime], budget_usd: Decimal, amount: Decimal, slack: Decimal
    ) -> bool:
        """One atomic statement: add `amount` if `spent + reserved + slack < budget`, with the
        reservations of this process's finished, not yet settled requests taken off."""
        tenant_id, start = key
        slack -= self.settling.credit((tenant_id, start.isoformat()))
        pool = await self._raw_pool()
        if pool is not None:
            row = await pool.fetchrow(
                RESERVE_SQL, amount, datetime.now(UTC), tenant_id, start, budget_usd, slack
            )
            return row is not None
        t = table(BudgetCounter)
        stmt = (
            update(t)
            .where(
                t.c.tenant_id == tenant_id,
                t.c.period_start == start,
                t.c.spent_usd + t.c.reserved_usd + slack < budget_usd,
            )
            .values(reserved_usd=t.c.reserved_usd + amount, updated_at=datetime.now(UTC))
            .returning(t.c.spent_usd)
        )
        async with self._autocommit.connect() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def _release(self, key: tuple[str, datetime], amount: Decimal) -> None:
        async with self._autocommit.connect() as conn:
            await upsert_counter_delta(
                conn, key[0], key[1], spent_delta=Decimal(0), reserved_delta=-amount
            )

    def forget(self, tenant_id: str) -> None:
        """Budget changed (admin PATCH): drop the cached exhausted flag."""
        self._exhausted.pop(tenant_id, None)

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _no_reset(conn: asyncpg.Connection) -> None:
    return None


def _exceeded(budget: Decimal) -> BudgetExceeded:
    return BudgetExceeded(
        f"Budget of ${usd_text(budget)} for this period is used up. Raise the budget or wait "
        "for the next period.",
    )
