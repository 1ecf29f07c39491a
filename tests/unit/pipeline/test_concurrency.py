"""The cap on a tenant's requests in flight gives every slot back, however a request ends."""

from __future__ import annotations

import asyncio
import gc

import pytest

from gateway.errors import RateLimited
from gateway.pipeline.concurrency import InFlight
from gateway.pipeline.context import Reply, TenantInfo
from gateway.pipeline.limits import RateLimiter, RateLimitStage, duration_text
from tests.support.context import bare_context


def capped(cap: int, *, rpm: int | None = None, ledger_id: str = "l") -> object:
    tenant = TenantInfo(
        id="t", name="t", key_id=None, rpm=rpm, flags={"max_concurrent_requests": cap}
    )
    return bare_context(tenant=tenant, ledger_id=ledger_id)


def test_a_request_refused_by_its_rpm_gives_its_slot_back() -> None:
    in_flight = InFlight()
    stage = RateLimitStage(RateLimiter(), in_flight)
    first = capped(5, rpm=1, ledger_id="a")
    asyncio.run(stage.before(first))  # type: ignore[arg-type]
    refused = capped(5, rpm=1, ledger_id="b")
    with pytest.raises(RateLimited):
        asyncio.run(stage.before(refused))  # type: ignore[arg-type]
    asyncio.run(stage.after(refused, Reply(status_code=429)))  # type: ignore[arg-type]
    assert in_flight.count("t") == 1
    asyncio.run(stage.after(first, Reply()))  # type: ignore[arg-type]
    asyncio.run(stage.after(first, Reply()))  # type: ignore[arg-type]  # twice: given once
    assert in_flight.count("t") == 0


def test_a_request_dropped_unsettled_gives_its_slot_back_when_collected() -> None:
    """A stream whose response never started is never settled by the pipeline."""
    in_flight = InFlight()
    in_flight.enter(capped(1, ledger_id="a"))  # type: ignore[arg-type]  # dropped at once
    gc.collect()
    assert in_flight.count("t") == 0
    kept = capped(1, ledger_id="b")
    in_flight.enter(kept)  # type: ignore[arg-type]
    with pytest.raises(RateLimited) as over:
        in_flight.enter(capped(1, ledger_id="c"))  # type: ignore[arg-type]
    assert over.value.headers["Retry-After"] == "1"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0ms"), (0.0201, "21ms"), (1, "1s"), (1.5, "1.5s"), (60, "1m0s"), (119.25, "1m59.25s"),
        # a hair under a whole minute or second rounds up to it: curl read `1m60s` (hunt11 h117)
        (119.9997, "2m0s"), (59.9996, "1m0s"), (0.9996, "1s"),
    ],
)  # fmt: skip
def test_reset_durations_are_written_as_openai_writes_them(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_the_other_processes_requests_in_flight_take_slots() -> None:
    """limits_sync fills `others` with the other processes' requests in flight (hunt11 h118)."""
    in_flight = InFlight()
    in_flight.others["t"] = 1
    running = capped(2, ledger_id="a")  # held: a context collected gives its slot back
    in_flight.enter(running)  # type: ignore[arg-type]
    with pytest.raises(RateLimited):
        in_flight.enter(capped(2, ledger_id="b"))  # type: ignore[arg-type]
    assert in_flight.counts() == {"t": 1}
    in_flight.others.clear()
    in_flight.enter(capped(2, ledger_id="c"))  # type: ignore[arg-type]
