"""Upstream quirks the OpenAI-compatible provider must survive: a stream that idles after its
last chunk, SSE with bare-CR line endings, error bodies in other shapes (Mistral, FastAPI),
404s and 429s. The upstream is a real aiohttp server in-process, scripted per test.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.errors import InvalidRequest, UpstreamError, UpstreamTimeout
from gateway.pipeline.dispatch import retryable
from gateway.providers.openai_compatible import OpenAICompatibleProvider, upstream_error
from tests.unit.providers.conftest import (
    USAGE,
    Handler,
    ServeRoute,
    delta,
    event,
    openai_compatible_deployment,
    sse_handler,
)

CHAT = {"messages": [{"role": "user", "content": "hello"}]}
Serve = Callable[[Handler], Awaitable[str]]


@pytest.fixture
def serve(serve_route: ServeRoute) -> Serve:
    """Upstreams answering POST /v1/chat/completions with a handler: their /v1 base URL."""

    async def start(handler: Handler) -> str:
        return (await serve_route("/v1/chat/completions", handler)).rstrip("/") + "/v1"

    return start


dep = openai_compatible_deployment


async def chunks(
    provider: OpenAICompatibleProvider, url: str, timeout_s: float = 5
) -> list[dict[str, Any]]:
    stream = provider.stream(CHAT, dep(url), endpoint="chat/completions", timeout_s=timeout_s)
    return [c async for c in stream]


# -- where a stream ends -------------------------------------------------------------------


async def test_the_trailing_usage_chunk_ends_the_stream_without_waiting_for_done(
    serve: Serve, provider: OpenAICompatibleProvider
) -> None:
    # usage-only is by spec the last chunk: an upstream that then idles is done, not stalled
    parts = [event(delta("hi")), event(delta("", "stop")), event(USAGE)]
    url = await serve(sse_handler(parts, idle_s=3))
    got = await chunks(provider, url, timeout_s=0.5)
    assert got == [delta("hi"), delta("", "stop"), USAGE]


async def test_a_stall_after_every_choice_finished_is_not_an_error(
    serve: Serve, provider: OpenAICompatibleProvider
) -> None:
    url = await serve(sse_handler([event(delta("hi")), event(delta("", "stop"))], idle_s=3))
    got = await chunks(provider, url, timeout_s=0.5)
    assert got == [delta("hi"), delta("", "stop")]


async def test_a_stall_before_the_finish_is_still_a_timeout(
    serve: Serve, provider: OpenAICompatibleProvider
) -> None:
    url = await serve(sse_handler([event(delta("hi"))], idle_s=3))
    with pytest.raises(UpstreamTimeout):
        await chunks(provider, url, timeout_s=0.5)


# -- a deployment whose api_base or model is wrong ---------------------------------------------


async def test_a_redirect_is_the_deployments_fault_not_followed_as_a_get(
    serve: Serve, provider: OpenAICompatibleProvider
) -> None:
    # http:// to https:// — aiohttp would follow a 301 with a GET and get a 404 or 405
    async def moved(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("https://api.example.com/v1/chat/completions")

    url = await serve(moved)
    with pytest.raises(UpstreamError) as info:
        await provider.complete(CHAT, dep(url), endpoint="chat/completions", timeout_s=5)
    assert (info.value.upstream_status, info.value.code) == (301, "upstream_not_found")
    assert "https://api.example.com" in info.value.message
    assert retryable(info.value)


async def test_a_404_is_the_deployments_fault(
    serve: Serve, provider: OpenAICompatibleProvider
) -> None:
    async def missing(request: web.Request) -> web.StreamResponse:
        err = {"message": "The model `m` does not exist", "code": "model_not_found"}
        return web.json_response({"error": err}, status=404)

    url = await serve(missing)
    with pytest.raises(UpstreamError) as info:
        await provider.complete(CHAT, dep(url), endpoint="chat/completions", timeout_s=5)
    assert info.value.status_code == 502 and info.value.upstream_status == 404
    assert "'d'" in info.value.message and "does not exist" in info.value.message
    assert retryable(info.value)


# -- error bodies in other shapes ----------------------------------------------------------------

MISTRAL = {
    "object": "Error",
    "message": [
        {"type": "extra_forbidden", "loc": ["body", "foo"], "msg": "Extra inputs are not permitted"}
    ],
    "type": "invalid_request_error",
    "code": 3001,
}
FASTAPI = {"detail": [{"loc": ["body", "messages"], "msg": "field required", "type": "missing"}]}


@pytest.mark.parametrize(
    ("body", "message", "code"),
    [
        (MISTRAL, "body.foo: Extra inputs are not permitted", "3001"),
        (FASTAPI, "body.messages: field required", "upstream_rejected_request"),
        ({"detail": "max_tokens is too large"}, "max_tokens is too large", None),
        ({"object": "error", "message": "max_tokens must be at least 1", "code": 400}, None, "400"),
    ],
)
def test_error_bodies_in_other_shapes_keep_their_message_and_code(
    body: dict[str, Any], message: str | None, code: str | None
) -> None:
    with pytest.raises(InvalidRequest) as info:
        upstream_error(dep("http://x/v1"), 422, orjson.dumps(body))
    assert "no error message" not in info.value.message
    if message is not None:
        assert info.value.message.endswith(message)
    if code is not None:
        assert info.value.code == code


def test_a_long_list_of_errors_is_cut_to_a_readable_message() -> None:
    many = {"detail": [{"loc": ["body", f"f{i}"], "msg": "x" * 80} for i in range(50)]}
    with pytest.raises(InvalidRequest) as info:
        upstream_error(dep("http://x/v1"), 422, orjson.dumps(many))
    assert "body.f0: " in info.value.message and len(info.value.message) < 600


# -- SSE line endings --------------------------------------------------------------------------


@pytest.mark.parametrize("newline", [b"\r", b"\r\n", b"\n"])
@pytest.mark.parametrize("size", [1, 5, 1 << 16])  # line ends split across writes, or whole
async def test_every_sse_line_ending_is_read(
    serve: Serve, provider: OpenAICompatibleProvider, newline: bytes, size: int
) -> None:
    # the SSE spec allows CR, LF and CRLF; a CRLF split across two reads is one line end
    raw = b"".join(event(c) for c in (delta("hi"), delta("", "stop"), USAGE)) + b"data: [DONE]\n\n"
    raw = raw.replace(b"\n", newline)
    url = await serve(sse_handler([raw[i : i + size] for i in range(0, len(raw), size)]))
    assert await chunks(provider, url) == [delta("hi"), delta("", "stop"), USAGE]


async def test_bare_cr_lines_each_written_alone_are_read(
    serve: Serve, provider: OpenAICompatibleProvider
) -> None:
    # every write ends in the CR ending its line: none can tell it from half a CRLF
    raw = b"".join(event(c) for c in (delta("hi"), delta("", "stop"))).replace(b"\n", b"\r")
    url = await serve(sse_handler([line + b"\r" for line in raw.split(b"\r")[:-1]]))
    assert await chunks(provider, url) == [delta("hi"), delta("", "stop")]
