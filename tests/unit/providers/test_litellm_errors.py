"""litellm's failures as the router sees them: the deployment's fault (fall back, count it) or
the request's (back to the client)."""

from __future__ import annotations

import pytest

from gateway.accounting.pricing import Price
from gateway.errors import UpstreamError
from gateway.pipeline.dispatch import retryable
from gateway.providers.litellm_adapter import LiteLLMProvider
from gateway.routing.catalog import Deployment
from gateway.settings import DeploymentConfig
from gateway.testing.mock_upstream import MockUpstream

KEY_ENV = "TG_TEST_LITELLM_ERRORS_KEY"
CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}


def deployment(provider: str, api_base: str | None = None) -> Deployment:
    config = DeploymentConfig(
        name="d",
        model="m",
        provider=provider,
        upstream_model="some-model",
        api_base=api_base,
        api_key_env=KEY_ENV,
    )
    return Deployment(config=config, price=Price(), price_source="config")


async def test_a_provider_litellm_does_not_know_is_the_deployments_fault() -> None:
    with pytest.raises(UpstreamError) as info:
        await LiteLLMProvider().complete(
            CHAT, deployment("nosuchprovider"), endpoint="chat/completions", timeout_s=5
        )
    assert info.value.code == "deployment_misconfigured"
    assert retryable(info.value)


@pytest.mark.parametrize("status", [401, 403])
async def test_an_upstream_refusing_our_key_is_the_deployments_fault(
    upstream: tuple[MockUpstream, str], monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-ant-SECRETPROVIDERKEY123")
    mock, base = upstream
    mock.knobs.update(fail_next=1, fail_status=status)
    with pytest.raises(UpstreamError) as info:
        await LiteLLMProvider().complete(
            CHAT, deployment("anthropic", base), endpoint="chat/completions", timeout_s=5
        )
    assert (info.value.upstream_status, info.value.code) == (status, "upstream_auth_failed")
    assert "SECRETPROVIDERKEY" not in info.value.message
    assert retryable(info.value)


def test_only_the_deployments_faults_are_retried() -> None:
    for status in (None, 301, 401, 403, 404, 429, 500, 503):
        assert retryable(UpstreamError("x", upstream_status=status)), status
    for status in (400, 413, 422):
        assert not retryable(UpstreamError("x", upstream_status=status)), status


async def test_a_key_read_with_a_trailing_newline_is_sent_without_it(
    upstream: tuple[MockUpstream, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-ant-key\n")  # `export K=$(cat key-file)` keeps it
    mock, base = upstream
    out = await LiteLLMProvider().complete(
        CHAT, deployment("anthropic", base), endpoint="chat/completions", timeout_s=5
    )
    assert out["choices"]
    assert mock.requests[-1]["x-api-key"] == "sk-ant-key"
