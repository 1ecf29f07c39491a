"""Group commit for budget reservations: concurrent requests of one tenant share a statement.

While one reservation statement for a tenant is in flight, later requests queue; the next
statement reserves the whole queue at once, admitted under the same rule as one-by-one:
a batch goes through only if `spent + reserved + (total - largest) < budget`, i.e. if every
request of it would have been admitted in turn with the largest last. So the "overspend by at
most one request's estimate" bound is unchanged, while under load the database sees one
statement per round trip instead of one per request. A batch that does not fit is split in
halves, in arrival order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Generic, TypeVar

K = TypeVar("K")
log = logging.getLogger("thriftgate.budgets")

# (key, budget, amount to add, slack that must still fit under the budget) -> the generation
# (epoch) the amount went into, or None when refused (see budgets.py)
Admitted = int | None
ReserveFn = Callable[[K, Decimal, Decimal, Decimal], Awaitable[Admitted]]
ReleaseFn = Callable[[K, Decimal, int], Awaitable[None]]


class ReservationBatcher(Generic[K]):
    def __init__(self, reserve: ReserveFn[K], release: ReleaseFn[K]) -> None:
        self._reserve = reserve
        self._release = release
        self._queues: dict[K, list[tuple[Decimal, Decimal, asyncio.Future[Admitted]]]] = {}
        self._running: set[K] = set()
        self._tasks: set[asyncio.Future[None]] = set()
        self.statements = 0  # for tests and metrics: how many DB statements were issued

    async def reserve(self, key: K, budget: Decimal, amount: Decimal) -> Admitted:
        if key not in self._running:
            # Nothing in flight for this tenant: the statement runs at once; requests arriving
            # meanwhile queue for the next batch. It runs to its end even if the caller is
            # cancelled (its client hung up): the database may have applied it before its
            # answer came back, and a reservation nobody settles would hold the budget for two
            # reservation lifetimes, so one the caller no longer awaits is given back.
            self._running.add(key)
            statement = asyncio.ensure_future(self._resolve(key, [(budget, amount)]))
            statement.add_done_callback(lambda _: self._statement_done(key))
            try:
                return (await asyncio.shield(statement))[0]
            except asyncio.CancelledError:
                statement.add_done_callback(lambda done: self._give_back(key, amount, done))
                raise
        fut: asyncio.Future[Admitted] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(key, []).append((budget, amount, fut))
        if key not in self._running:
            self._start(key)
        return await fut

    def _statement_done(self, key: K) -> None:
        self._running.discard(key)
        if self._queues.get(key):
            self._start(key)

    def _give_back(self, key: K, amount: Decimal, done: asyncio.Future[list[Admitted]]) -> None:
        """Release what a statement admitted for a caller that stopped waiting for it."""
        if done.cancelled() or done.exception() is not None:
            return
        epoch = done.result()[0]
        if epoch is not None:
            self._spawn(self._release(key, amount, epoch))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)  # keep a reference: the loop holds tasks only weakly
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    def _start(self, key: K) -> None:
        self._running.add(key)
        self._spawn(self._drain(key))

    async def _drain(self, key: K) -> None:
        try:
            while True:
                batch = self._queues.pop(key, None)
                if not batch:
                    return
                try:
                    await self._run_batch(key, batch)
                except BaseException as exc:
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
        finally:
            self._running.discard(key)
            # Anything queued after the last pop gets a new drainer.
            if self._queues.get(key):
                self._start(key)

    async def _run_batch(
        self, key: K, batch: list[tuple[Decimal, Decimal, asyncio.Future[Admitted]]]
    ) -> None:
        results = await self._resolve(key, [(b, a) for b, a, _ in batch])
        await self._settle_waiters(key, batch, results)

    async def _resolve(self, key: K, items: list[tuple[Decimal, Decimal]]) -> list[Admitted]:
        """Admit `items` in arrival order: all at once if they fit, else by halves.

        A refusal does not change the counter, so once one request is refused every later one
        in the same batch would be refused too: O(log n) statements even when over budget.
        """
        budget = min(b for b, _ in items)
        amounts = [a for _, a in items]
        total = sum(amounts, Decimal(0))
        self.statements += 1
        epoch = await self._reserve(key, budget, total, total - max(amounts))
        if epoch is not None:
            return [epoch] * len(items)
        if len(items) == 1:
            return [None]
        mid = len(items) // 2
        left = await self._resolve(key, items[:mid])
        if any(e is None for e in left):
            return left + [None] * (len(items) - mid)
        return left + await self._resolve(key, items[mid:])

    async def _settle_waiters(
        self,
        key: K,
        batch: list[tuple[Decimal, Decimal, asyncio.Future[Admitted]]],
        results: list[Admitted],
    ) -> None:
        orphaned: dict[int, Decimal] = {}
        for (_, amount, fut), epoch in zip(batch, results, strict=True):
            if fut.done():  # the waiter was cancelled: give its reservation back
                if epoch is not None:
                    orphaned[epoch] = orphaned.get(epoch, Decimal(0)) + amount
                continue
            fut.set_result(epoch)
        for epoch, amount in orphaned.items():
            await self._release(key, amount, epoch)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("releasing a budget reservation failed: %r", task.exception())
