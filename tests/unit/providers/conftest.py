"""Shared fixtures of the provider tests."""

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer

from gateway.providers.openai_compatible import OpenAICompatibleProvider
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
