"""litellm never logs a deployment's key, whatever the log level (THRIFTGATE_LOG_LEVEL=debug)."""

from __future__ import annotations

import logging

import pytest

from gateway.accounting.pricing import Price
from gateway.providers.litellm_adapter import LiteLLMProvider
from gateway.routing.catalog import Deployment
from gateway.settings import DeploymentConfig
from gateway.testing.mock_upstream import MockUpstream

KEY_ENV = "TG_TEST_LITELLM_LOG_KEY"
KEY = "sk-SECRETPROVIDERKEY123"


async def test_debug_logging_does_not_print_the_provider_key(
    upstream: tuple[MockUpstream, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, anthropic_base = upstream
    monkeypatch.setenv(KEY_ENV, KEY)
    caplog.set_level(logging.DEBUG)  # the root logger, as app_from_env sets it for "debug"
    provider = LiteLLMProvider()
    config = DeploymentConfig(
        name="claude",
        model="claude",
        provider="anthropic",
        upstream_model="claude-haiku-4-5",
        api_base=anthropic_base,
        api_key_env=KEY_ENV,
    )
    dep = Deployment(config=config, price=Price(), price_source="config")
    body = {"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 16}
    out = await provider.complete(body, dep, endpoint="chat/completions", timeout_s=10)
    assert out["choices"][0]["message"]["content"].startswith("Claude echo")
    assert caplog.records, "nothing was logged at all: the check below would prove nothing"
    assert KEY not in caplog.text
