"""Budgets: reserve an estimate before dispatch, settle the actual cost after.

Reservation is one atomic `UPDATE ... RETURNING` on the tenant's counter row for the period:
it succeeds while `spent + reserved < budget`, so concurrent requests overspend by at most
one request's estimate, plus what answers outgrow their reservations (none with `max_tokens`;
see limits.BudgetStage for the uncapped ones). Concurrent requests of one tenant share a
statement (group commit, see reservations.py) without loosening that bound.
Settlement runs in the ledger writer's batch transaction (see ledger.py).

A process that dies (SIGKILL, OOM, power) never settles its requests in flight, and a summed
counter cannot tell whose reservations are whose. So reservations live in two generations of
`reservation_ttl_s` each: a reservation goes into the current epoch's `reserved_usd`; when the
epoch turns, that sum becomes `reserved_prev_usd`, and the one before is dropped. A request's
reservation thus counts for at least one epoch and at most two; a crashed process's are gone
within two, instead of holding the tenant's budget for the rest of the period. Settlement
takes a reservation back from the generation it went into. A live process carries the
reservations of its requests still running into each new generation (`BudgetBook.hold`), so
only a dead process's lapse, however long a request runs.

Spend is settled into every counter the cost belongs to (its month's, its day's, the total),
whichever period is in force, and a missing counter is created with the spend the ledger
already holds for its period: a tenant whose `budget_period` changes (monthly -> daily ->
monthly) keeps what it has spent, with any number of workers and replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import asyncpg
from sqlalchemy import case, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.accounting.pricing import usd_text
from gateway.accounting.reservations import ReservationBatcher
from gateway.accounting.settling import Settling
from gateway.db.models import BudgetCounter, Tenant, UsageRollupDaily, table
from gateway.db.session import BUDGET_POOL_MAX, upsert_insert
from gateway.errors import BudgetExceeded

log = logging.getLogger("thriftgate.budgets")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PERIODS = ("monthly", "daily", "total")
# A crashed process's reservations are dropped within twice this (its tenants' budgets held
# for up to two minutes, not twenty as at 600 s); a request running longer keeps its own
# (`BudgetBook.hold` carries it into each new generation, every quarter of this).
DEFAULT_RESERVATION_TTL_S = 60.0
# A budget check the database does not answer (a stalled server, a failover, a lock on the
# counters) is an unavailable budget store, as a key lookup is (auth.LOOKUP_TIMEOUT_S). The
# statement's own timeout (10 s) did not bound it: asyncpg's cancel of it, and the connections
# after it, went through the same stalled path, and every request waited 20-60 s or as long as
# the database did.
STORE_TIMEOUT_S = 3.0


def reservation_epoch(ttl_s: float, now: float | None = None) -> int:
    return int((time.time() if now is None else now) // ttl_s)


def period_start(period: str, now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    if period == "daily":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "total":
        return EPOCH
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def period_end(period: str, start: datetime) -> datetime | None:
    """When the period that began at `start` ends (the next one's start); None: never."""
    if period == "daily":
        return start + timedelta(days=1)
    if period == "monthly":
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return None


def counter_starts(at: datetime) -> list[datetime]:
    """The counters a cost incurred at `at` belongs to: its month's, its day's and the total.

    Spend lands in all of them whatever period is in force, so a tenant whose `budget_period`
    changes (monthly -> daily -> monthly) finds the new period's counter already holding what
    was spent under the other one (on the 1st the day's and the month's are one row).
    """
    return sorted({period_start(period, at) for period in PERIODS})


def _ledger_spent_since(tenant_id: str, start: datetime) -> Any:
    """What the ledger holds for the tenant since `start` (a UTC midnight: every period
    starts on one), read from the daily rollup: the ledger's own rows may have been pruned
    (accounting/retention.py), and the rollup, kept by the ledger's insert trigger in the
    same transaction, sums them all (and a month in ~30 rows per model)."""
    daily = table(UsageRollupDaily)
    return (
        select(func.coalesce(func.sum(daily.c.cost_usd), 0))
        .where(daily.c.tenant_id == tenant_id, daily.c.bucket >= start)
        .scalar_subquery()
    )


async def ensure_counter(conn: AsyncConnection, tenant_id: str, start: datetime) -> None:
    """Create a counter if missing, with the spend the ledger already holds for its period;
    bring an existing one up to it (GREATEST: the counter may be ahead by rows settled in the
    same instant, never legitimately behind).

    Settlement keeps every existing counter of the tenant current (counter_starts); this
    catches up counters written before that rule, or while the tenant had no budget. Run once
    per process and period before the first reservation, never per request.
    """
    tbl = table(BudgetCounter)
    stmt = _new_counter(conn, tenant_id, start, _ledger_spent_since(tenant_id, start))
    sets = {"spent_usd": _greatest(conn, tbl.c.spent_usd, stmt.excluded.spent_usd)}
    await conn.execute(
        stmt.on_conflict_do_update(index_elements=["tenant_id", "period_start"], set_=sets)
    )


def _new_counter(conn: AsyncConnection, tenant_id: str, start: datetime, spent: Any) -> Any:
    """The INSERT of a counter with nothing reserved (its ON CONFLICT is the caller's)."""
    return upsert_insert(conn.dialect.name, table(BudgetCounter)).values(
        tenant_id=tenant_id,
        period_start=start,
        spent_usd=spent,
        reserved_usd=Decimal(0),
        reserved_prev_usd=Decimal(0),
        reserve_epoch=0,
        updated_at=datetime.now(UTC),
    )


async def add_spend(
    conn: AsyncConnection, tenant_id: str, start: datetime, spent_delta: Decimal
) -> None:
    """Add spend to a counter; a missing one is created with the ledger's sum for its period.

    Call in the transaction that inserted the spend's ledger rows: the sum then includes them.
    Two transactions creating the same counter: the second waits on the first's row and adds
    only its own delta (the first's sum could not see its uncommitted rows), so neither is
    lost nor counted twice. The UPDATE first keeps the common case to one cheap statement.
    """
    tbl = table(BudgetCounter)
    now = datetime.now(UTC)
    found = await conn.execute(
        update(tbl)
        .where(tbl.c.tenant_id == tenant_id, tbl.c.period_start == start)
        .values(spent_usd=tbl.c.spent_usd + spent_delta, updated_at=now)
    )
    if found.rowcount:
        return
    stmt = _new_counter(conn, tenant_id, start, _ledger_spent_since(tenant_id, start))
    sets = {"spent_usd": tbl.c.spent_usd + spent_delta, "updated_at": now}
    await conn.execute(
        stmt.on_conflict_do_update(index_elements=["tenant_id", "period_start"], set_=sets)
    )


async def upsert_counter_delta(
    conn: AsyncConnection,
    tenant_id: str,
    start: datetime,
    *,
    spent_delta: Decimal,
    reserved_delta: Decimal,
    epoch: int | None = None,
) -> None:
    """Add spend to a counter and take reservations (a negative `reserved_delta`) back.

    A reservation comes off the generation it went into (`epoch`, as the reserving statement
    returned it); one whose generation was dropped meanwhile is not taken twice. Rows spooled
    before generations existed (no epoch) come off the current one.
    """
    tbl = table(BudgetCounter)
    stmt = _new_counter(conn, tenant_id, start, spent_delta)
    sets: dict[str, Any] = {"spent_usd": tbl.c.spent_usd + spent_delta}
    sets.update(_release_sets(conn, reserved_delta, epoch))
    sets["updated_at"] = datetime.now(UTC)
    await conn.execute(
        stmt.on_conflict_do_update(index_elements=["tenant_id", "period_start"], set_=sets)
    )


async def release_reserved(
    conn: AsyncConnection, tenant_id: str, start: datetime, amount: Decimal, epoch: int | None
) -> None:
    """Take a reservation back from the counter it went into (a missing counter holds none:
    creating one here would start it at zero spend)."""
    if not amount:
        return
    tbl = table(BudgetCounter)
    sets = _release_sets(conn, -amount, epoch)
    await conn.execute(
        update(tbl)
        .where(tbl.c.tenant_id == tenant_id, tbl.c.period_start == start)
        .values(**sets, updated_at=datetime.now(UTC))
    )


def _release_sets(
    conn: AsyncConnection, reserved_delta: Decimal, epoch: int | None
) -> dict[str, Any]:
    """Column updates taking reservations (a negative delta) back from their generation."""
    if not reserved_delta:
        return {}
    tbl = table(BudgetCounter)
    current, previous = tbl.c.reserved_usd, tbl.c.reserved_prev_usd
    # Never below zero: a generation dropped early must not go negative later.
    if epoch is None:
        return {"reserved_usd": _greatest(conn, current + reserved_delta, 0)}
    return {
        "reserved_usd": case(
            (tbl.c.reserve_epoch == epoch, _greatest(conn, current + reserved_delta, 0)),
            else_=current,
        ),
        "reserved_prev_usd": case(
            (tbl.c.reserve_epoch == epoch + 1, _greatest(conn, previous + reserved_delta, 0)),
            else_=previous,
        ),
    }


def _greatest(conn: AsyncConnection | AsyncEngine, *exprs: Any) -> Any:
    if conn.dialect.name == "sqlite":
        return func.max(*exprs)  # SQLite's two-argument max() is a scalar function
    return func.greatest(*exprs)


class BudgetStoreUnavailable(Exception):
    """The budget store could not be reached; the limits stage applies the down policy."""


# $7 is this process's epoch. The row moves to the later of its epoch and ours: a row one
# epoch behind turns its current generation into the previous one; older ones are dropped.
_LIVE_RESERVED = (
    "CASE WHEN reserve_epoch >= $7 THEN reserved_usd + reserved_prev_usd "
    "WHEN reserve_epoch = $7 - 1 THEN reserved_usd ELSE 0 END"
)
RESERVE_SQL = (
    "UPDATE budget_counters SET "
    "reserved_prev_usd = CASE WHEN reserve_epoch >= $7 THEN reserved_prev_usd "
    "WHEN reserve_epoch = $7 - 1 THEN reserved_usd ELSE 0 END, "
    "reserved_usd = CASE WHEN reserve_epoch >= $7 THEN reserved_usd ELSE 0 END + $1, "
    "reserve_epoch = GREATEST(reserve_epoch, $7), updated_at = $2 "
    f"WHERE tenant_id = $3 AND period_start = $4 AND spent_usd + {_LIVE_RESERVED} + $6 < $5 "
    "RETURNING reserve_epoch"
)


def live_reserved(current: Decimal, previous: Decimal, row_epoch: int, epoch: int) -> Decimal:
    """What a counter's reservations still hold at `epoch` (the rule of RESERVE_SQL)."""
    if row_epoch >= epoch:
        return current + previous
    return current if row_epoch == epoch - 1 else Decimal(0)


class BudgetBook:
    """Reserve/settle against `budget_counters`; one DB round trip per reserving request.

    On Postgres the reservation goes through a small raw asyncpg pool with a prepared
    statement: profiling showed SQLAlchemy's per-execute overhead at ~14% of the gateway's
    CPU under load for this one statement. Everything else uses SQLAlchemy.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        settling: Settling | None = None,
        *,
        reservation_ttl_s: float = DEFAULT_RESERVATION_TTL_S,
    ) -> None:
        self.engine = engine
        self.reservation_ttl_s = reservation_ttl_s
        # finished requests' reservations not yet released in the table (settling.py)
        self.settling = settling if settling is not None else Settling()
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        # tenant -> the period start its counter was last ensured for (one per tenant: a set of
        # every (tenant, day) ever seen grew by one per budgeted tenant per day, forever)
        self._known: dict[str, datetime] = {}
        # tenant -> its budget found spent for the period (re-checked after half a second)
        self._exhausted: dict[str, _Spent] = {}
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._batcher: ReservationBatcher[tuple[str, datetime]] = ReservationBatcher(
            self._reserve_statement, self._release
        )
        # reservations of requests still running here, carried into each new generation
        self._held: dict[str, _Held] = {}  # by the request's ledger id
        self._keeper: asyncio.Task[None] | None = None
        self._carrying = asyncio.Lock()

    async def _raw_pool(self) -> asyncpg.Pool | None:
        if self.engine.dialect.name != "postgresql":
            return None
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    # SQLAlchemy's asyncpg URLs name TLS `?ssl=`; a raw DSN would send that
                    # to the server as a setting, so it goes to asyncpg as an argument.
                    url = self.engine.url
                    ssl = url.query.get("ssl")
                    dsn = (
                        url.difference_update_query(["ssl"])
                        .set(drivername="postgresql")
                        .render_as_string(hide_password=False)
                    )
                    # reset=_no_reset: the default runs RESET ALL etc. on every release, an
                    # extra round trip per request (14% of CPU in a profile); this pool only
                    # ever runs one stateless statement.
                    # synchronous_commit off: a reservation is soft state (settlement clamps
                    # at zero), and waiting for the WAL flush on every admission cost ~0.5 ms
                    # per request at c=1 here. Ledger rows keep full durability. Set once a
                    # connection, not as a startup parameter: PgBouncer refuses those it does
                    # not know, and every reservation failed (fail-open: budgets unenforced).
                    self._pool = await asyncpg.create_pool(
                        dsn,
                        min_size=1,
                        max_size=BUDGET_POOL_MAX,
                        command_timeout=10,
                        reset=_no_reset,
                        init=_commit_asynchronously,
                        **({"ssl": ssl} if ssl else {}),
                    )
        return self._pool

    async def reserve(
        self, tenant_id: str, budget_usd: Decimal, period: str, amount: Decimal
    ) -> tuple[datetime, int]:
        """Reserve `amount`; returns the period start and the generation (epoch) it went into,
        which settlement needs. Raises BudgetExceeded when the budget is spent or held by
        requests in flight."""
        start = period_start(period)
        spent = self._exhausted.get(tenant_id)
        if spent is not None and spent.applies(start, budget_usd):
            raise spent.error
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                epoch = await self._reserve(tenant_id, start, budget_usd, amount)
            if epoch is None:
                return await self._recheck(tenant_id, start, budget_usd, amount, period)
        except (SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise BudgetStoreUnavailable(type(exc).__name__) from exc
        return start, epoch

    async def _recheck(
        self,
        tenant_id: str,
        start: datetime,
        budget_usd: Decimal,
        amount: Decimal,
        period: str = "monthly",
    ) -> tuple[datetime, int]:
        """A refusal is re-checked before it is answered, against the database's view.

        The budget may have been changed by an admin through another worker or replica, whose
        notice has not reached this one (a budget removed meanwhile is left to that notice).
        And the reservations holding the budget may be finished requests of another worker or
        replica, released by its next ledger flush (this process only knows its own:
        settling.py); a lone request must not be refused for them. So: re-read the budget, and
        while the counter's spend leaves room, retry a little longer than a ledger flush
        interval. What is spent is final for the period: that refusal is remembered for half a
        second (per budget: a raised one is checked at once)."""
        # (never near a reservation lifetime: waiting out two would drop live reservations)
        wait_s = min(2 * self.settling.flush_interval_s + 0.25, self.reservation_ttl_s / 4)
        deadline = time.monotonic() + wait_s
        delay = 0.05
        while True:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                state = await self._state(tenant_id, start)
            if state.budget is not None and state.budget != budget_usd:
                budget_usd = state.budget  # changed since this process loaded the tenant
            elif state.spent >= budget_usd:
                error = _used_up(budget_usd, state.spent, period_end(period, start))
                self._exhausted[tenant_id] = _Spent(
                    time.monotonic() + 0.5, start, budget_usd, error
                )
                raise error
            elif time.monotonic() >= deadline:
                raise _held(budget_usd, state.spent, state.reserved, amount)
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.2)
            async with asyncio.timeout(STORE_TIMEOUT_S):
                epoch = await self._batcher.reserve((tenant_id, start), budget_usd, amount)
            if epoch is not None:
                self._exhausted.pop(tenant_id, None)
                return start, epoch

    async def _state(self, tenant_id: str, start: datetime) -> _CounterState:
        """The tenant's budget as the database has it now, and its counter's spend and live
        reservations (net of this process's finished requests)."""
        t, c = table(Tenant), table(BudgetCounter)
        columns = (t.c.budget_usd, c.c.spent_usd, c.c.reserved_usd, c.c.reserved_prev_usd)
        joined = t.outerjoin(c, (c.c.tenant_id == t.c.id) & (c.c.period_start == start))
        stmt = select(*columns, c.c.reserve_epoch).select_from(joined).where(t.c.id == tenant_id)
        async with self._autocommit.connect() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:  # the tenant is gone: nothing to re-check
            return _CounterState(None, Decimal(0), Decimal(0))
        budget = None if row[0] is None else Decimal(str(row[0]))
        spent = Decimal(str(row[1] or 0))
        live = live_reserved(
            Decimal(str(row[2] or 0)),
            Decimal(str(row[3] or 0)),
            int(row[4] or 0),
            reservation_epoch(self.reservation_ttl_s),
        )
        credit = self.settling.credit((tenant_id, start.isoformat()))
        return _CounterState(budget, spent, max(Decimal(0), live - credit))

    async def _reserve(
        self, tenant_id: str, start: datetime, budget_usd: Decimal, amount: Decimal
    ) -> int | None:
        key = (tenant_id, start)
        if self._known.get(tenant_id) != start:
            async with self._autocommit.connect() as conn:
                await ensure_counter(conn, tenant_id, start)
            self._known[tenant_id] = start
            # the tenant's requests still running here from the last period hold this one's
            await self._carry_stale(reservation_epoch(self.reservation_ttl_s), tenant_id)
        return await self._batcher.reserve(key, budget_usd, amount)

    async def _reserve_statement(
        self, key: tuple[str, datetime], budget_usd: Decimal, amount: Decimal, slack: Decimal
    ) -> int | None:
        """One atomic statement: add `amount` if `spent + reserved + slack < budget`, with the
        reservations of this process's finished, not yet settled requests taken off. Returns
        the generation the amount went into, or None when refused."""
        tenant_id, start = key
        slack -= self.settling.credit((tenant_id, start.isoformat()))
        epoch = reservation_epoch(self.reservation_ttl_s)
        pool = await self._raw_pool()
        if pool is not None:
            row = await pool.fetchrow(
                RESERVE_SQL, amount, datetime.now(UTC), tenant_id, start, budget_usd, slack, epoch
            )
            return None if row is None else int(row[0])
        t = table(BudgetCounter)
        same = t.c.reserve_epoch >= epoch
        behind = t.c.reserve_epoch == epoch - 1
        live = case(
            (same, t.c.reserved_usd + t.c.reserved_prev_usd), (behind, t.c.reserved_usd), else_=0
        )
        stmt = (
            update(t)
            .where(
                t.c.tenant_id == tenant_id,
                t.c.period_start == start,
                t.c.spent_usd + live + slack < budget_usd,
            )
            .values(
                reserved_prev_usd=case(
                    (same, t.c.reserved_prev_usd), (behind, t.c.reserved_usd), else_=0
                ),
                reserved_usd=case((same, t.c.reserved_usd), else_=0) + amount,
                reserve_epoch=_greatest(self._autocommit, t.c.reserve_epoch, epoch),
                updated_at=datetime.now(UTC),
            )
            .returning(t.c.reserve_epoch)
        )
        async with self._autocommit.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else int(row[0])

    async def _release(self, key: tuple[str, datetime], amount: Decimal, epoch: int) -> None:
        async with self._autocommit.connect() as conn:
            await release_reserved(conn, key[0], key[1], amount, epoch)

    def hold(
        self,
        request: str,
        tenant_id: str,
        start: datetime,
        amount: Decimal,
        epoch: int,
        owner: EpochOwner,
        *,
        period: str,
    ) -> None:
        """Keep a running request's reservation alive until `release_hold`.

        A generation is dropped two reservation lifetimes after it began, so a request running
        longer (a long stream, a `timeout_s` above the lifetime) lost its reservation while it
        ran, and the budget admitted others against room it still held. Each generation turn,
        the reservations of requests still running here are carried into the current one, and
        `owner.reserve_epoch` (the request's, for its settlement) says where it is now. The
        owner is held weakly: a request that vanished unsettled (a stream nobody started to
        read) is not carried, and its reservation lapses as a crashed process's does.
        `request` names it (its ledger id) for `release_hold`.

        So is a request still running when its `period` turns: its cost counts in the period
        it ends in (its ledger row's time), so its reservation moves into the new period's
        counter (`owner.period_start` says which), or the new period admitted a whole budget
        beside the requests still running and was then billed for them too. It moves before
        this process's first reservation of the tenant in the new period, and at midnight
        (UTC) for requests of processes taking none."""
        self._held[request] = _Held(tenant_id, period, start, amount, epoch, weakref.ref(owner))
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._keep(), name="budget-reservation-keeper")

    def release_hold(self, request: str) -> None:
        """The request is finished (its ledger row about to carry its epoch): stop carrying."""
        self._held.pop(request, None)

    async def _keep(self) -> None:
        while self._held:
            # every period starts at a UTC midnight: be there for it, not up to a quarter late
            await asyncio.sleep(min(self.reservation_ttl_s / 4, _until_midnight_s()))
            try:
                await self._carry_stale(reservation_epoch(self.reservation_ttl_s))
            except Exception as exc:  # the next turn tries again; a crash-like loss at worst
                log.warning("carrying running requests' reservations failed: %r", exc)

    async def _carry_stale(self, epoch: int, tenant_id: str | None = None) -> None:
        """Move the reservations of running requests (of `tenant_id`, or all) whose generation
        or period has turned into the current ones: reserve the sum again there (no budget
        check: it is already admitted), then take it from where it was (nothing if that
        generation was dropped meanwhile). One pass at a time: two would move a request twice."""
        async with self._carrying:
            stale: dict[tuple[str, datetime, int, datetime], list[str]] = {}
            for request, held in list(self._held.items()):
                if held.owner() is None:
                    del self._held[request]
                    continue
                if tenant_id is not None and held.tenant_id != tenant_id:
                    continue
                start = max(held.start, period_start(held.period))
                if held.epoch < epoch or start != held.start:
                    key = (held.tenant_id, held.start, held.epoch, start)
                    stale.setdefault(key, []).append(request)
            for key, requests in sorted(stale.items(), key=lambda kv: kv[0]):
                # only those still running: a finished one's ledger row already says where
                group = [self._held[r] for r in requests if r in self._held]
                if group:
                    await self._carry(group, *key, epoch)

    async def _carry(
        self,
        group: list[_Held],
        tenant_id: str,
        old_start: datetime,
        old: int,
        start: datetime,
        epoch: int,
    ) -> None:
        amount = sum((h.amount for h in group), Decimal(0))
        if start != old_start:  # a new period: its counter begins with the ledger's spend
            async with self._autocommit.connect() as conn:
                await ensure_counter(conn, tenant_id, start)
        for held in group:  # one finishing during the statements settles in the new one
            held.move_to(start, epoch)
        try:
            new = await self._reserve_statement((tenant_id, start), _NO_LIMIT, amount, Decimal(0))
        except BaseException:
            for held in group:  # still where it was: tried again at the next pass
                held.move_to(old_start, old)
            raise
        if new is None:  # the counter row is gone (tenant deleted): nothing to carry
            return
        if new != epoch:  # another replica's clock turned the row further
            for held in group:
                held.move_to(start, new)
        await self._release((tenant_id, old_start), amount, old)

    def forget(self, tenant_id: str) -> None:
        """Budget changed (admin PATCH): drop the cached exhausted flag."""
        self._exhausted.pop(tenant_id, None)

    async def aclose(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._keeper
            self._keeper = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _no_reset(conn: asyncpg.Connection) -> None:
    return None


async def _commit_asynchronously(conn: asyncpg.Connection) -> None:
    await conn.execute("SET synchronous_commit TO off")


def _until_midnight_s() -> float:
    """Seconds to the next UTC midnight (Unix time has no leap seconds), and a little more."""
    return 86_400 - time.time() % 86_400 + 0.05


# a budget no reservation reaches: carrying an admitted reservation checks nothing
_NO_LIMIT = Decimal(10) ** 20


class EpochOwner(Protocol):
    """Where a reservation's counter and generation are written for its settlement (a
    RequestContext)."""

    period_start: datetime | None
    reserve_epoch: int | None


@dataclass(slots=True)
class _Held:
    """A running request's reservation: where it is, and the request to tell when it moves."""

    tenant_id: str
    period: str
    start: datetime
    amount: Decimal
    epoch: int
    owner: weakref.ref[EpochOwner]

    def move_to(self, start: datetime, epoch: int) -> None:
        self.start, self.epoch = start, epoch
        owner = self.owner()
        if owner is not None:
            owner.period_start, owner.reserve_epoch = start, epoch


@dataclass(frozen=True, slots=True)
class _CounterState:
    budget: Decimal | None
    spent: Decimal
    reserved: Decimal


@dataclass(frozen=True, slots=True)
class _Spent:
    """A refusal for a budget spent for the period, answered from memory for a moment."""

    until: float  # monotonic
    start: datetime
    budget: Decimal
    error: BudgetExceeded

    def applies(self, start: datetime, budget: Decimal) -> bool:
        return time.monotonic() < self.until and start == self.start and budget == self.budget


def _used_up(budget: Decimal, spent: Decimal, ends: datetime | None = None) -> BudgetExceeded:
    """Spent for the period: final until the period ends or the budget is raised, so OpenAI's
    SDKs are told not to retry (`x-should-retry: false`; they retried a 429 twice). The
    message says when the period ends (in UTC), or that a total budget never renews."""
    if ends is None:
        wait = "A total budget does not renew: raise it to serve this tenant again."
    else:
        wait = f"Raise the budget or wait for the next period, from {ends:%Y-%m-%dT%H:%M:%SZ}."
    return BudgetExceeded(
        f"Budget of ${usd_text(budget)} for this period is used up: ${_money(spent)} spent. "
        + wait,
        headers={"x-should-retry": "false"},
    )


def _held(budget: Decimal, spent: Decimal, reserved: Decimal, amount: Decimal) -> BudgetExceeded:
    """Not spent, but reserved by requests in flight (each reserves its dearest answer):
    they release the rest when they finish, so a retry shortly may pass."""
    return BudgetExceeded(
        f"Budget of ${usd_text(budget)} for this period has no room left now: "
        f"${_money(spent)} spent and ${_money(reserved)} reserved by requests in flight "
        "(a request reserves the most its answer can cost; this one up to "
        f"${_money(amount)}). Retry when they finish, or send a smaller max_tokens to reserve "
        "less.",
        headers={"Retry-After": "1"},
    )


def _money(value: Decimal) -> str:
    """Dollars for a message: 6 significant digits are plenty to see where the budget went."""
    return usd_text(Decimal(format(value, ".6g")) if value else value)
