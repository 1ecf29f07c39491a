"""A client that hangs up while its answered request is being settled (hardening round 11).

The answer came back from the upstream (billed there in full); the stages' `after` hooks run,
in reverse order, and the cache stage's awaits its store (its one worker thread, queued behind
other requests' embeddings). A hang-up then cancels the task: the hooks still to run, the
rate limiter's (the slot in flight, the TPM count) and the account stage's (the ledger row),
never ran. Settling runs to the end whatever the client does, as a stream's does.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.pipeline.context import Reply, RequestContext
from gateway.pipeline.pipeline import Pipeline
from tests.support.context import bare_context


class Settles:
    """A stage whose `after` records that it ran (the account stage writing its row)."""

    def __init__(self) -> None:
        self.settled: list[int] = []

    async def before(self, ctx: RequestContext) -> Reply | None:
        return None

    async def after(self, ctx: RequestContext, reply: Reply) -> None:
        self.settled.append(ctx.status_code)


class SlowStore:
    """A stage whose `after` waits (the cache stage storing the answer)."""

    def __init__(self) -> None:
        self.storing = asyncio.Event()
        self.release = asyncio.Event()

    async def before(self, ctx: RequestContext) -> Reply | None:
        return None

    async def after(self, ctx: RequestContext, reply: Reply) -> None:
        self.storing.set()
        await self.release.wait()


class Answers:
    async def dispatch(self, ctx: RequestContext) -> Reply:
        return Reply(body={"choices": [{"index": 0, "message": {"content": "hi"}}]})


def test_a_hang_up_while_the_answer_is_settled_still_writes_its_row() -> None:
    account, cache = Settles(), SlowStore()
    pipeline = Pipeline(
        catalog=None,  # type: ignore[arg-type]
        file_config=None,  # type: ignore[arg-type]
        stages=[account, cache],  # type: ignore[list-item]
        dispatcher=Answers(),  # type: ignore[arg-type]
    )

    async def go() -> None:
        task = asyncio.create_task(pipeline.run(bare_context()))
        await cache.storing.wait()
        task.cancel()  # gateway/api/disconnect.py: the client hung up
        await asyncio.sleep(0)
        cache.release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(5):  # the settling finishes on its own
            await asyncio.sleep(0)

    asyncio.run(go())
    assert account.settled == [200]  # the upstream billed the answer: so does the ledger
