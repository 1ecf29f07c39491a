"""The OpenAI-compatible provider against the real mock upstream, served in-process.

How an upstream's refusal becomes our error: what of its text reaches the client, the ledger
and the logs, and that the deployment's key never does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway.accounting.pricing import Price
from gateway.errors import InvalidRequest, UpstreamError
from gateway.providers.openai_compatible import OpenAICompatibleProvider
from gateway.routing.catalog import Deployment
from gateway.settings import DeploymentConfig
from gateway.testing.mock_upstream import MockUpstream

KEY_ENV = "TG_TEST_OPENAI_COMPATIBLE_KEY"
KEY = "sk-SECRETPROVIDERKEY123"
CHAT = {"messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[MockUpstream, str]]:
    mock = MockUpstream()
    server = TestServer(mock.app())
    await server.start_server()
    yield mock, str(server.make_url("/v1"))
    await server.close()


@pytest.fixture
async def provider() -> AsyncIterator[OpenAICompatibleProvider]:
    p = OpenAICompatibleProvider()
    yield p
    await p.aclose()


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def deployment(api_base: str, **extra: Any) -> Deployment:
    config = DeploymentConfig(name="d", model="m", api_base=api_base, api_key_env=KEY_ENV, **extra)
    return Deployment(config=config, price=Price(), price_source="config")


async def refusal(
    provider: OpenAICompatibleProvider, dep: Deployment
) -> UpstreamError | InvalidRequest:
    with pytest.raises((UpstreamError, InvalidRequest)) as info:
        await provider.complete(CHAT, dep, endpoint="chat/completions", timeout_s=5)
    assert isinstance(info.value, UpstreamError | InvalidRequest)
    return info.value


async def test_an_upstream_error_code_fits_the_ledger_column(
    upstream: tuple[MockUpstream, str], provider: OpenAICompatibleProvider, key: str
) -> None:
    mock, url = upstream
    mock.knobs.update(fail_next=1, fail_status=400, fail_code="x" * 80, fail_param="p" * 80)
    err = await refusal(provider, deployment(url))
    assert isinstance(err, InvalidRequest)
    # usage_ledger.error_code is String(64): Postgres refuses the whole row past that
    assert err.code == "x" * 64
    assert err.param == "p" * 64
