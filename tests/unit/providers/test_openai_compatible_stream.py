"""How the OpenAI-compatible provider reads an upstream's SSE stream: the event framing real
servers send (and the official SDK accepts), and where a stream counts as complete.

The upstream here is a real aiohttp server in-process that sends exactly the bytes a test gives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from gateway.accounting.pricing import Price
from gateway.errors import UpstreamError
from gateway.providers.openai_compatible import MAX_EVENT_BYTES, OpenAICompatibleProvider
from gateway.routing.catalog import Deployment
from gateway.settings import DeploymentConfig
from tests.unit.providers.conftest import USAGE, ServeRoute, delta, event, sse_handler

CHAT = {"messages": [{"role": "user", "content": "hello"}]}
Serve = Callable[[list[bytes]], Awaitable[str]]


@pytest.fixture
def serve(serve_route: ServeRoute) -> Serve:
    """Start an upstream that answers every chat request with `parts`, written one by one."""

    async def start(parts: list[bytes]) -> str:
        return (await serve_route("/v1/chat/completions", sse_handler(parts))).rstrip("/") + "/v1"

    return start


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
