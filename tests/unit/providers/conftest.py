"""Shared fixtures of the provider tests."""

from collections.abc import AsyncIterator, Awaitable, Callable

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
ServeMessages = Callable[[Handler], Awaitable[str]]


@pytest.fixture
async def serve_messages() -> AsyncIterator[ServeMessages]:
    """Start in-process upstreams answering Anthropic's POST /v1/messages with a handler."""
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
