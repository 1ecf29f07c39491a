"""litellm's Anthropic failures as the client sees them: a context-length error keeps OpenAI's
code and a clean message, a stalled stream is a timeout like any other stall, and a 404 is the
deployment's fault. The upstream is a real aiohttp server in-process, scripted per test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.accounting.pricing import Price
from gateway.errors import InvalidRequest, UpstreamError, UpstreamTimeout
from gateway.pipeline.dispatch import retryable
from gateway.providers.litellm_adapter import LiteLLMProvider
from gateway.routing.catalog import Deployment
from gateway.settings import DeploymentConfig

KEY_ENV = "TG_TEST_LITELLM_QUIRKS_KEY"
CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Serve = Callable[[Handler], Awaitable[str]]


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-ant-test")


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[TestServer] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_post("/v1/messages", handler)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return str(server.make_url(""))

    yield start
    for server in servers:
        await server.close()


def dep(base: str) -> Deployment:
    config = DeploymentConfig(
        name="d",
        model="m",
        provider="anthropic",
        upstream_model="claude",
        api_base=base,
        api_key_env=KEY_ENV,
    )
    return Deployment(config=config, price=Price(), price_source="config")


def anthropic_error(status: int, kind: str, message: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        body = {"type": "error", "error": {"type": kind, "message": message}}
        return web.json_response(body, status=status)

    return handler


@pytest.mark.parametrize("stream", [False, True])
async def test_a_prompt_too_long_is_context_length_exceeded_with_a_clean_message(
    serve: Serve, stream: bool
) -> None:
    why = "prompt is too long: 250000 tokens > 200000 maximum"
    base = await serve(anthropic_error(400, "invalid_request_error", why))
    with pytest.raises(InvalidRequest) as info:
        if stream:
            async for _ in LiteLLMProvider().stream(
                CHAT, dep(base), endpoint="chat/completions", timeout_s=5
            ):
                pass
        else:
            await LiteLLMProvider().complete(
                CHAT, dep(base), endpoint="chat/completions", timeout_s=5
            )
    assert info.value.code == "context_length_exceeded"
    assert info.value.message == f"Deployment 'd' rejected the request: {why}"


async def test_a_404_is_the_deployments_fault(serve: Serve) -> None:
    base = await serve(anthropic_error(404, "not_found_error", "model: claude-nope"))
    with pytest.raises(UpstreamError) as info:
        await LiteLLMProvider().complete(CHAT, dep(base), endpoint="chat/completions", timeout_s=5)
    assert (info.value.upstream_status, info.value.code) == (404, "upstream_not_found")
    assert retryable(info.value)


def sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


async def test_a_stalled_stream_is_a_timeout(serve: Serve) -> None:
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

    base = await serve(stalls)
    with pytest.raises(UpstreamTimeout):
        async for _ in LiteLLMProvider().stream(
            CHAT, dep(base), endpoint="chat/completions", timeout_s=0.5
        ):
            pass
