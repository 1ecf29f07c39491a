"""A Responses stream's terminal event says what the request cost and saved (round 11)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from gateway.pipeline.responses_stream import ResponsesStream, response_events

PRICED = {"cost_usd": "0.000012", "saved_usd": "0"}
USAGE = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}


def run(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    async def source() -> AsyncIterator[dict[str, Any]]:
        for c in chunks:
            yield c

    async def go() -> list[dict[str, Any]]:
        translator = ResponsesStream("resp_1", 1, "m", {})
        return [e async for e in response_events(source(), translator)]

    return asyncio.run(go())


def text(words: str, finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": words}, "finish_reason": finish}]}


def test_a_completed_stream_carries_the_usage_chunks_price() -> None:
    events = run(
        [
            text("Hi"),
            text(" there", "stop"),
            {"choices": [], "usage": USAGE, "x_thriftgate": PRICED},
        ]
    )
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["x_thriftgate"] == PRICED


def test_a_failed_stream_carries_what_was_billed() -> None:
    """The pipeline sends the usage chunk before the in-band error: the failure is priced."""
    events = run([
        text("Hi"),
        {"choices": [], "usage": USAGE, "x_thriftgate": PRICED},
        {"error": {"message": "cut", "type": "upstream_error", "code": "upstream_error"}},
    ])  # fmt: skip
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["x_thriftgate"] == PRICED


def test_without_a_price_the_response_has_no_such_field() -> None:
    events = run([text("Hi", "stop")])
    assert "x_thriftgate" not in events[-1]["response"]
