"""Budgets: reserve an estimate before dispatch, settle the actual cost after.

Reservation is one atomic `UPDATE ... RETURNING` on the tenant's counter row for the period:
it succeeds while `spent + reserved < budget`, so concurrent requests overspend by at most
one request's estimate (per replica: each replica's in-flight requests each see the row).
Settlement runs in the ledger writer's batch transaction (see ledger.py).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.db.models import BudgetCounter
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
    table = BudgetCounter.__table__
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
    stmt = insert(table).values(
        tenant_id=tenant_id,
        period_start=start,
        spent_usd=spent_delta,
        reserved_usd=max(reserved_delta, Decimal(0)),
        updated_at=datetime.now(UTC),
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["tenant_id", "period_start"],
        set_={
            "spent_usd": table.c.spent_usd + spent_delta,
            # Never below zero: a reservation lost in a crash must not go negative later.
            "reserved_usd": _greatest(conn, table.c.reserved_usd + reserved_delta),
            "updated_at": datetime.now(UTC),
        },
    )
    await conn.execute(stmt)


def _greatest(conn: AsyncConnection, expr):  # type: ignore[no-untyped-def]
    from sqlalchemy import func

    if conn.dialect.name == "sqlite":
        return func.max(expr, 0)
    return func.greatest(expr, 0)


class BudgetBook:
    """Reserve/settle against `budget_counters`; one DB round trip per reserving request."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._known: set[tuple[str, datetime]] = set()
        self._exhausted: dict[str, float] = {}  # tenant -> monotonic time to re-check

    async def reserve(
        self, tenant_id: str, budget_usd: Decimal, period: str, amount: Decimal
    ) -> datetime:
        """Reserve `amount`; returns the period start. Raises BudgetExceeded when spent."""
        start = period_start(period)
        until = self._exhausted.get(tenant_id)
        if until is not None and time.monotonic() < until:
            raise _exceeded(budget_usd)
        key = (tenant_id, start)
        async with self.engine.begin() as conn:
            if key not in self._known:
                await upsert_counter_delta(
                    conn, tenant_id, start, spent_delta=Decimal(0), reserved_delta=Decimal(0)
                )
                self._known.add(key)
            t = BudgetCounter.__table__
            stmt = (
                update(t)
                .where(
                    t.c.tenant_id == tenant_id,
                    t.c.period_start == start,
                    t.c.spent_usd + t.c.reserved_usd < budget_usd,
                )
                .values(reserved_usd=t.c.reserved_usd + amount, updated_at=datetime.now(UTC))
                .returning(t.c.spent_usd)
            )
            row = (await conn.execute(stmt)).first()
        if row is None:
            # Re-check at most every half second while exhausted (settlements may free room).
            self._exhausted[tenant_id] = time.monotonic() + 0.5
            raise _exceeded(budget_usd)
        self._exhausted.pop(tenant_id, None)
        return start

    def forget(self, tenant_id: str) -> None:
        """Budget changed (admin PATCH): drop the cached exhausted flag."""
        self._exhausted.pop(tenant_id, None)


def _exceeded(budget: Decimal) -> BudgetExceeded:
    return BudgetExceeded(
        f"Budget of ${budget} for this period is used up. Raise the budget or wait for the next "
        "period.",
    )
