"""A bug (an exception that is not a GatewayError) still settles the request: every stage that
ran gets its `after` (the budget reservation is released, the ledger row written) with a 500,
before or during a stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.pipeline.context import Reply, RequestContext
from gateway.pipeline.pipeline import Pipeline
from tests.support.context import bare_context


class Recorder:
    def __init__(self) -> None:
        self.settled: list[tuple[int, str | None]] = []

    async def before(self, ctx: RequestContext) -> Reply | None:
        return None

    async def after(self, ctx: RequestContext, reply: Reply) -> None:
        self.settled.append((ctx.status_code, ctx.error_code))


class Broken:
    def __init__(self, when: str) -> None:
        self.when = when

    async def dispatch(self, ctx: RequestContext) -> Reply:
        if self.when == "before":
            raise RecursionError("maximum recursion depth exceeded")
        return Reply(chunks=self._chunks())

    async def _chunks(self) -> AsyncIterator[dict[str, Any]]:
        yield {"choices": [{"index": 0, "delta": {"content": "hi"}}]}
        raise TypeError("unexpected chunk")


def ctx() -> RequestContext:
    return bare_context()


def pipeline(stage: Recorder, when: str) -> Pipeline:
    return Pipeline(
        catalog=None,  # type: ignore[arg-type]
        file_config=None,  # type: ignore[arg-type]
        stages=[stage],  # type: ignore[list-item]
        dispatcher=Broken(when),  # type: ignore[arg-type]
    )


def test_a_bug_before_the_reply_still_runs_every_after() -> None:
    stage = Recorder()
    with pytest.raises(RecursionError):
        asyncio.run(pipeline(stage, "before").run(ctx()))
    assert stage.settled == [(500, "internal_error")]


def test_a_bug_mid_stream_ends_with_an_error_event_and_settles() -> None:
    stage = Recorder()

    async def go() -> list[dict[str, Any]]:
        reply = await pipeline(stage, "stream").run(ctx())
        assert reply.chunks is not None
        return [c async for c in reply.chunks]

    events = asyncio.run(go())
    assert events[0]["choices"][0]["delta"]["content"] == "hi"
    assert events[-1]["error"]["code"] == "internal_error"
    assert stage.settled == [(500, "internal_error")]
