"""litellm's Anthropic failures as the client sees them: a context-length error keeps OpenAI's
code and a clean message, a stalled stream is a timeout like any other stall, and a 404 is the
deployment's fault. The upstream is a real aiohttp server in-process, scripted per test."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.errors import InvalidRequest, UpstreamError, UpstreamRateLimited, UpstreamTimeout
from gateway.pipeline.dispatch import retryable
from gateway.providers.litellm_adapter import LiteLLMProvider
from gateway.routing.catalog import Deployment
from tests.unit.providers.conftest import Handler, ServeMessages, anthropic_deployment

KEY_ENV = "TG_TEST_LITELLM_QUIRKS_KEY"
CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-ant-test")


def dep(base: str) -> Deployment:
    return anthropic_deployment(base, KEY_ENV)


async def call(base: str, *, stream: bool) -> None:
    """One chat request through litellm to `base`, streamed or not, read to its end."""
    if stream:
        async for _ in LiteLLMProvider().stream(
            CHAT, dep(base), endpoint="chat/completions", timeout_s=5
        ):
            pass
    else:
        await LiteLLMProvider().complete(CHAT, dep(base), endpoint="chat/completions", timeout_s=5)


def anthropic_error(status: int, kind: str, message: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        body = {"type": "error", "error": {"type": kind, "message": message}}
        return web.json_response(body, status=status)

    return handler


@pytest.mark.parametrize("stream", [False, True])
async def test_a_prompt_too_long_is_context_length_exceeded_with_a_clean_message(
    serve_messages: ServeMessages, stream: bool
) -> None:
    why = "prompt is too long: 250000 tokens > 200000 maximum"
    base = await serve_messages(anthropic_error(400, "invalid_request_error", why))
    with pytest.raises(InvalidRequest) as info:
        await call(base, stream=stream)
    assert info.value.code == "context_length_exceeded"
    assert info.value.message == f"Deployment 'd' rejected the request: {why}"


async def test_a_404_is_the_deployments_fault(serve_messages: ServeMessages) -> None:
    base = await serve_messages(anthropic_error(404, "not_found_error", "model: claude-nope"))
    with pytest.raises(UpstreamError) as info:
        await LiteLLMProvider().complete(CHAT, dep(base), endpoint="chat/completions", timeout_s=5)
    assert (info.value.upstream_status, info.value.code) == (404, "upstream_not_found")
    assert retryable(info.value)


def sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


async def test_a_stalled_stream_is_a_timeout(serve_messages: ServeMessages) -> None:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude",
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 5, "output_tokens": 1},
        },
    }
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "Hi"},
    }

    async def stalls(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(sse("message_start", start) + sse("content_block_delta", delta))
        await asyncio.sleep(3)
        return resp

    base = await serve_messages(stalls)
    with pytest.raises(UpstreamTimeout):
        async for _ in LiteLLMProvider().stream(
            CHAT, dep(base), endpoint="chat/completions", timeout_s=0.5
        ):
            pass


def anthropic_429(retry_after: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        body = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
        return web.json_response(body, status=429, headers={"retry-after": retry_after})

    return handler


@pytest.mark.parametrize("stream", [False, True])
async def test_a_429_is_passed_on_as_a_rate_limit_with_its_retry_after(
    serve_messages: ServeMessages, stream: bool
) -> None:
    base = await serve_messages(anthropic_429("7"))
    with pytest.raises(UpstreamRateLimited) as info:
        await call(base, stream=stream)
    err = info.value
    assert (err.status_code, err.upstream_status, err.code) == (429, 429, "rate_limit_exceeded")
    assert err.headers.get("Retry-After") == "7"
    assert "slow down" in err.message
    assert retryable(err)  # the next deployment may serve it
