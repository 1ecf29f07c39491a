"""Shared fixtures of the provider tests."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.accounting.pricing import Price
from gateway.providers.openai_compatible import OpenAICompatibleProvider
from gateway.routing.catalog import Deployment
from gateway.settings import DeploymentConfig
from gateway.testing.mock_upstream import MockUpstream


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[MockUpstream, str]]:
    """The project's mock upstream, served in-process: (its state, its root URL)."""
    mock = MockUpstream()
    server = TestServer(mock.app())
    await server.start_server()
    yield mock, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def provider() -> AsyncIterator[OpenAICompatibleProvider]:
    p = OpenAICompatibleProvider()
    yield p
    await p.aclose()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ServeRoute = Callable[[str, Handler], Awaitable[str]]
ServeMessages = Callable[[Handler], Awaitable[str]]


@pytest.fixture
async def serve_route() -> AsyncIterator[ServeRoute]:
    """Start in-process upstreams answering POST `path` with a handler: their root URL."""
    servers: list[TestServer] = []

    async def start(path: str, handler: Handler) -> str:
        app = web.Application()
        app.router.add_post(path, handler)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return str(server.make_url(""))

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
def serve_messages(serve_route: ServeRoute) -> ServeMessages:
    """Upstreams answering Anthropic's POST /v1/messages with a handler."""

    async def start(handler: Handler) -> str:
        return await serve_route("/v1/messages", handler)

    return start


def sse_handler(parts: list[bytes], idle_s: float = 0.0) -> Handler:
    """Write `parts` one by one, then idle `idle_s` seconds (no EOF yet) before ending the body."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for part in parts:
            await resp.write(part)
        if idle_s:
            await asyncio.sleep(idle_s)
        await resp.write_eof()
        return resp

    return handler


# OpenAI-style stream events
def event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def delta(content: str, finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": {"content": content}, "finish_reason": finish}
    return {"id": "c", "object": "chat.completion.chunk", "choices": [choice]}


USAGE = {"id": "c", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}


def openai_compatible_deployment(url: str) -> Deployment:
    """An OpenAI-compatible deployment "d" of model "m" at `url` (its API base), unpriced."""
    config = DeploymentConfig(name="d", model="m", api_base=url)
    return Deployment(config=config, price=Price(), price_source="config")


def anthropic_deployment(base: str, key_env: str) -> Deployment:
    """A litellm-translated Anthropic deployment pointed at a local upstream."""
    config = DeploymentConfig(
        name="d",
        model="m",
        provider="anthropic",
        upstream_model="claude",
        api_base=base,
        api_key_env=key_env,
    )
    return Deployment(config=config, price=Price(), price_source="config")
