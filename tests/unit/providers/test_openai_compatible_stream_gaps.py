"""A deployment's `timeout_s` bounds each wait for a stream's next event, not only the first.
An upstream that sent one chunk and then only `: ping` comments, or trickled an event a byte at
a time, kept the socket's read timeout from firing and held the request (and its budget
reservation) for as long as it went on. The wait is the upstream's: a consumer that pauses
longer than the timeout between chunks (a slow client) is not a stalled upstream."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from gateway.errors import UpstreamTimeout
from gateway.providers.openai_compatible import OpenAICompatibleProvider
from tests.unit.providers.conftest import (
    Handler,
    ServeRoute,
    delta,
    event,
    openai_compatible_deployment,
)

CHAT = {"messages": [{"role": "user", "content": "hello"}]}
END = [event(delta("", "stop")), b"data: [DONE]\n\n"]


def first_then(parts: list[bytes], every_s: float, then: list[bytes] = END) -> Handler:
    """One chunk at once, then `parts` one by one, `every_s` apart, then `then`."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(event(delta("first")))
        for part in parts:
            await asyncio.sleep(every_s)
            await resp.write(part)
        for part in then:
            await resp.write(part)
        await resp.write_eof()
        return resp

    return handler


async def _stream_of(
    serve_route: ServeRoute, provider: OpenAICompatibleProvider, handler: Handler, timeout_s: float
) -> list[str]:
    url = await serve_route("/v1/chat/completions", handler)
    dep = openai_compatible_deployment(url.rstrip("/") + "/v1")
    stream = provider.stream(CHAT, dep, endpoint="chat/completions", timeout_s=timeout_s)
    return [c["choices"][0]["delta"].get("content") async for c in stream]


async def test_pings_past_the_timeout_after_the_first_chunk_are_a_timeout(
    serve_route: ServeRoute, provider: OpenAICompatibleProvider
) -> None:
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout, match="stalled for more than 1 s"):
        await _stream_of(serve_route, provider, first_then([b": ping\n\n"] * 40, 0.1), 1.0)
    assert time.monotonic() - started < 2.5


async def test_an_event_trickled_a_byte_at_a_time_past_the_timeout_is_a_timeout(
    serve_route: ServeRoute, provider: OpenAICompatibleProvider
) -> None:
    slow = event(delta("slow"))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await _stream_of(
            serve_route, provider, first_then([slow[i : i + 1] for i in range(len(slow))], 0.1), 1.0
        )
    assert time.monotonic() - started < 2.5


async def test_chunks_within_the_timeout_stream_however_long_the_whole(
    serve_route: ServeRoute, provider: OpenAICompatibleProvider
) -> None:
    parts = [event(delta(f"{i}")) for i in range(6)]
    got = await _stream_of(serve_route, provider, first_then(parts, 0.3), 1.0)
    assert got == ["first", *[f"{i}" for i in range(6)], ""]


async def test_a_consumer_slower_than_the_timeout_is_not_an_upstream_stall(
    serve_route: ServeRoute, provider: OpenAICompatibleProvider
) -> None:
    url = await serve_route(
        "/v1/chat/completions", first_then([event(delta("second"))], 0.0, [b": ping\n\n", *END])
    )
    dep = openai_compatible_deployment(url.rstrip("/") + "/v1")
    got = []
    async for chunk in provider.stream(CHAT, dep, endpoint="chat/completions", timeout_s=0.5):
        got.append(chunk["choices"][0]["delta"].get("content"))
        await asyncio.sleep(0.8)  # the client's pause: everything it asks for has arrived
    assert got == ["first", "second", ""]


async def test_the_timeout_is_named_as_a_person_reads_it(
    serve_route: ServeRoute, provider: OpenAICompatibleProvider
) -> None:
    # an attempt's limit is what is left of the request's deadline: 4.96646 s read as such
    with pytest.raises(UpstreamTimeout, match=r"stalled for more than 0\.667 s\.$"):
        await _stream_of(serve_route, provider, first_then([b": ping\n\n"] * 20, 0.1), 2 / 3)
