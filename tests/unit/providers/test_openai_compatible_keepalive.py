"""Keep-alive comments are not an answer: an upstream that only sends `: ping` (OpenRouter's
`: OPENROUTER PROCESSING` while it queues, a proxy's heartbeat in front of a stuck server) for
longer than the deployment's timeout has timed out, so dispatch can fall back, instead of
holding the request for as long as it keeps pinging."""

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


def pinging(for_s: float, then: list[bytes]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        until = time.monotonic() + for_s
        while time.monotonic() < until:
            await resp.write(b": ping\n\n")
            await asyncio.sleep(0.1)
        for part in then:
            await resp.write(part)
        await resp.write_eof()
        return resp

    return handler


async def test_pings_past_the_timeout_before_any_chunk_are_a_timeout(
    serve_route: ServeRoute, provider: OpenAICompatibleProvider
) -> None:
    answer = [event(delta("hi", "stop")), b"data: [DONE]\n\n"]
    url = await serve_route("/v1/chat/completions", pinging(4.0, answer))
    dep = openai_compatible_deployment(url.rstrip("/") + "/v1")
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        async for _ in provider.stream(CHAT, dep, endpoint="chat/completions", timeout_s=1.0):
            pass
    assert time.monotonic() - started < 2.5


async def test_pings_within_the_timeout_then_the_answer_stream_as_usual(
    serve_route: ServeRoute, provider: OpenAICompatibleProvider
) -> None:
    answer = [event(delta("hi")), event(delta("", "stop")), b"data: [DONE]\n\n"]
    url = await serve_route("/v1/chat/completions", pinging(0.3, answer))
    dep = openai_compatible_deployment(url.rstrip("/") + "/v1")
    stream = provider.stream(CHAT, dep, endpoint="chat/completions", timeout_s=2.0)
    chunks = [c async for c in stream]
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["hi", ""]
