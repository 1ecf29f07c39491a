"""How the OpenAI-compatible provider reads an upstream's SSE stream: the event framing real
servers send (and the official SDK accepts), and where a stream counts as complete.

The upstream here is a real aiohttp server in-process that sends exactly the bytes a test gives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.accounting.pricing import Price
from gateway.errors import UpstreamError
from gateway.providers.openai_compatible import MAX_EVENT_BYTES, OpenAICompatibleProvider
from gateway.routing.catalog import Deployment
from gateway.settings import DeploymentConfig

CHAT = {"messages": [{"role": "user", "content": "hello"}]}
Serve = Callable[[list[bytes]], Awaitable[str]]


def event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def delta(content: str, finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": {"content": content}, "finish_reason": finish}
    return {"id": "c", "object": "chat.completion.chunk", "choices": [choice]}


USAGE = {"id": "c", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start an upstream that answers every chat request with `parts`, written one by one."""
    servers: list[TestServer] = []

    async def start(parts: list[bytes]) -> str:
        async def chat(request: web.Request) -> web.StreamResponse:
            await request.read()
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for part in parts:
                await resp.write(part)
            await resp.write_eof()
            return resp

        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/v1"))

    yield start
    for server in servers:
        await server.close()


async def chunks(provider: OpenAICompatibleProvider, url: str) -> list[dict[str, Any]]:
    config = DeploymentConfig(name="d", model="m", api_base=url)
    dep = Deployment(config=config, price=Price(), price_source="config")
    stream = provider.stream(CHAT, dep, endpoint="chat/completions", timeout_s=5)
    return [c async for c in stream]


@pytest.mark.parametrize(
    "tail", [[event(delta("", "stop"))], [event(delta("", "stop")), event(USAGE)]]
)
async def test_a_finished_stream_without_done_is_complete(
    serve: Serve, provider: OpenAICompatibleProvider, tail: list[bytes]
) -> None:
    # Some OpenAI-compatible servers close after the last chunk and never send [DONE].
    url = await serve([event(delta("hi")), *tail])
    got = await chunks(provider, url)
    assert got[0]["choices"][0]["delta"]["content"] == "hi"
    assert len(got) == 1 + len(tail)


async def test_a_stream_cut_before_its_finish_is_an_upstream_error(
    serve: Serve, provider: OpenAICompatibleProvider
) -> None:
    url = await serve([event(delta("hi")), event(delta(" there"))])
    with pytest.raises(UpstreamError, match="ended the stream early"):
        await chunks(provider, url)


async def test_an_event_past_aiohttps_line_cap_passes_through(
    serve: Serve, provider: OpenAICompatibleProvider
) -> None:
    # A base64 image or audio delta, or a whole tool call's arguments, in one event.
    big = "A" * (2 * 1024 * 1024)
    url = await serve([event(delta("hi")), event(delta(big)), event(delta("", "stop"))])
    got = await chunks(provider, url)
    assert [c["choices"][0]["delta"]["content"] for c in got] == ["hi", big, ""]


async def test_a_runaway_event_is_an_upstream_error(
    serve: Serve, provider: OpenAICompatibleProvider
) -> None:
    url = await serve([b"data: " + b"x" * (MAX_EVENT_BYTES + 1)])
    with pytest.raises(UpstreamError, match="over"):
        await chunks(provider, url)


async def test_lines_split_across_writes_and_crlf_are_read_whole(
    serve: Serve, provider: OpenAICompatibleProvider
) -> None:
    raw = (event(delta("hello")) + event(delta("", "stop"))).replace(b"\n", b"\r\n")
    url = await serve([raw[i : i + 7] for i in range(0, len(raw), 7)] + [b"data: [DONE]\r\n\r\n"])
    got = await chunks(provider, url)
    assert [c["choices"][0]["delta"]["content"] for c in got] == ["hello", ""]


def multiline(chunk: dict[str, Any], newline: bytes = b"\n") -> bytes:
    """`chunk` pretty-printed over several `data:` lines of one event, as the SSE spec allows."""
    pretty = orjson.dumps(chunk, option=orjson.OPT_INDENT_2).split(b"\n")
    return b"".join(b"data: " + line + newline for line in pretty) + newline


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
async def test_an_event_over_several_data_lines_is_one_chunk(
    serve: Serve, provider: OpenAICompatibleProvider, newline: bytes
) -> None:
    url = await serve([multiline(delta("hi"), newline), multiline(delta("", "stop"), newline)])
    got = await chunks(provider, url)
    assert got == [delta("hi"), delta("", "stop")]


async def test_comments_fields_and_a_data_line_without_space_are_read(
    serve: Serve, provider: OpenAICompatibleProvider
) -> None:
    parts = [
        b": keep-alive\n\n",
        b"event: message\nid: 1\n" + event(delta("hi")),
        b"data:" + orjson.dumps(delta("", "stop")) + b"\n\n",
        b"data: [DONE]\n\n",
    ]
    url = await serve(parts)
    assert await chunks(provider, url) == [delta("hi"), delta("", "stop")]
