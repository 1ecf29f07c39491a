"""The group-commit batcher against an in-memory counter with the database's exact rule."""

import asyncio
from decimal import Decimal

from gateway.accounting.reservations import ReservationBatcher

EPOCH = 2_900_000  # the generation every reservation here goes into


class Counter:
    def __init__(self) -> None:
        self.spent = Decimal(0)
        self.reserved = Decimal(0)
        self.calls = 0

    async def reserve(self, key, budget, amount, slack) -> int | None:
        self.calls += 1
        await asyncio.sleep(0.001)  # a round trip: lets more requests queue behind it
        if self.spent + self.reserved + slack < budget:
            self.reserved += amount
            return EPOCH
        return None

    async def release(self, key, amount, epoch) -> None:
        assert epoch == EPOCH
        self.reserved -= amount


async def test_concurrent_reservations_share_statements_and_keep_the_bound():
    c = Counter()
    b = ReservationBatcher(c.reserve, c.release)
    budget, est = Decimal(10), Decimal(1)
    results = await asyncio.gather(*(b.reserve("t", budget, est) for _ in range(50)))
    admitted = results.count(EPOCH)
    # one-by-one the rule admits while spent + reserved < budget: exactly 10 of 1.0 each
    assert admitted == 10
    assert c.reserved == Decimal(10)
    assert c.calls <= 12  # batched, and halving once over budget: O(log n) statements


async def test_batch_that_does_not_fit_falls_back_in_arrival_order():
    c = Counter()
    c.spent = Decimal("8.5")
    b = ReservationBatcher(c.reserve, c.release)
    results = await asyncio.gather(*(b.reserve("t", Decimal(10), Decimal(1)) for _ in range(5)))
    assert results == [EPOCH, EPOCH, None, None, None]  # 8.5 < 10 and 9.5 < 10; then over
    assert c.reserved == Decimal(2)


async def test_uneven_amounts_admit_at_most_one_over():
    c = Counter()
    b = ReservationBatcher(c.reserve, c.release)
    amounts = [Decimal(x) for x in ("3", "1", "5", "2", "4")]
    results = await asyncio.gather(*(b.reserve("t", Decimal(6), a) for a in amounts))
    granted = sum((a for a, ok in zip(amounts, results, strict=True) if ok is not None), Decimal(0))
    largest = max(a for a, ok in zip(amounts, results, strict=True) if ok is not None)
    assert granted - largest < 6  # everything but the last admitted fit under the budget


async def test_a_cancelled_waiter_gives_its_reservation_back():
    c = Counter()
    b = ReservationBatcher(c.reserve, c.release)
    first = asyncio.ensure_future(b.reserve("t", Decimal(10), Decimal(1)))
    await asyncio.sleep(0)
    first.cancel()
    assert await b.reserve("t", Decimal(10), Decimal(2))
    await asyncio.sleep(0.01)
    assert c.reserved == Decimal(2)


async def test_tenants_are_independent_and_errors_reach_every_waiter():
    async def broken(key, budget, amount, slack):
        raise OSError("db down")

    async def release(key, amount, epoch):
        return None

    b = ReservationBatcher(broken, release)
    results = await asyncio.gather(
        *(b.reserve(k, Decimal(1), Decimal(1)) for k in ("a", "b")), return_exceptions=True
    )
    assert all(isinstance(r, OSError) for r in results)


async def test_a_caller_cancelled_while_its_statement_is_answered_gives_it_back():
    """The database applies a reservation before its answer arrives: a client hanging up in
    that moment cancelled the caller, nobody settled the reservation, and it held the budget
    for two reservation lifetimes (hunt9 h2: $0.082 left reserved with nothing in flight after
    400 requests whose clients hung up within 1-20 ms)."""
    c = Counter()

    async def applied_then_answered(key, budget, amount, slack):
        c.reserved += amount  # committed on the server...
        await asyncio.sleep(0.01)  # ...and the answer still on its way back
        return EPOCH

    b = ReservationBatcher(applied_then_answered, c.release)
    caller = asyncio.ensure_future(b.reserve("t", Decimal(10), Decimal(1)))
    await asyncio.sleep(0.001)
    caller.cancel()
    await asyncio.sleep(0.05)
    assert caller.cancelled()
    assert c.reserved == Decimal(0)
