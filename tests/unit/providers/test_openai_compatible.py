"""The OpenAI-compatible provider against the real mock upstream, served in-process.

How an upstream's refusal becomes our error: what of its text reaches the client, the ledger
and the logs, and that the deployment's key never does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from gateway.accounting.pricing import Price
from gateway.errors import InvalidRequest, UpstreamError
from gateway.providers.litellm_adapter import _translate
from gateway.providers.openai_compatible import OpenAICompatibleProvider
from gateway.routing.catalog import Deployment
from gateway.settings import DeploymentConfig
from gateway.testing.mock_upstream import MockUpstream

KEY_ENV = "TG_TEST_OPENAI_COMPATIBLE_KEY"
KEY = "sk-SECRETPROVIDERKEY123"
CHAT = {"messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def deployment(root: str, **extra: Any) -> Deployment:
    """A deployment of the mock served at `root` (its OpenAI API is under /v1)."""
    config = DeploymentConfig(
        name="d", model="m", api_base=root + "/v1", api_key_env=KEY_ENV, **extra
    )
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


async def test_a_key_straddling_the_message_cut_leaves_no_prefix(
    upstream: tuple[MockUpstream, str], provider: OpenAICompatibleProvider, key: str
) -> None:
    mock, url = upstream
    dep = deployment(url)
    # the message is cut at 500 chars, a text body at 200, a code at 64: each key starts before
    mock.knobs.update(fail_next=1, fail_status=500, fail_message="A" * 485 + key)
    assert "sk-SECRET" not in (await refusal(provider, dep)).message
    mock.knobs.update(fail_next=1, fail_status=502, fail_message="x" * 190 + key, fail_text=True)
    assert "sk-SECRET" not in (await refusal(provider, dep)).message
    mock.knobs.update(fail_next=1, fail_status=400, fail_text=False, fail_message="bad")
    mock.knobs.update(fail_code="c" * 50 + key, fail_param="p" * 50 + key)
    err = await refusal(provider, dep)
    assert err.code == "c" * 50 + "***" and err.param == "p" * 50 + "***"
    mock.knobs.update(fail_next=1, fail_status=503, fail_message="A" * 485 + key)
    with pytest.raises(UpstreamError) as info:
        async for _ in provider.stream(CHAT, dep, endpoint="chat/completions", timeout_s=5):
            pass
    assert "AAA" in info.value.message and "sk-SECRET" not in info.value.message


def test_litellm_errors_mask_the_key_before_the_cut(key: str) -> None:
    err = _translate(deployment("http://unused"), RuntimeError("A" * 290 + key + " and more"))
    assert "AAA" in err.message and "sk-SECRET" not in err.message


async def test_a_key_read_with_a_trailing_newline_is_sent_without_it(
    upstream: tuple[MockUpstream, str],
    provider: OpenAICompatibleProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mock, url = upstream
    monkeypatch.setenv(KEY_ENV, KEY + "\n")  # `export K=$(cat key-file)` keeps it
    out = await provider.complete(CHAT, deployment(url), endpoint="chat/completions", timeout_s=5)
    assert out["choices"]
    assert mock.requests[-1]["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("endpoint", ["chat", "stream", "embeddings"])
async def test_a_request_that_cannot_be_built_is_the_deployments_fault(
    upstream: tuple[MockUpstream, str],
    provider: OpenAICompatibleProvider,
    monkeypatch: pytest.MonkeyPatch,
    endpoint: str,
) -> None:
    """aiohttp refuses a control character inside a header, and a key alongside credentials
    in the URL: an UpstreamError (dispatch falls back), not an internal error."""
    _, url = upstream
    with_creds = url.replace("http://", "http://user:pw@")
    for key, base in ((KEY + "\r\nX-Injected: 1", url), (KEY, with_creds)):
        monkeypatch.setenv(KEY_ENV, key)
        dep = deployment(base)
        with pytest.raises(UpstreamError) as info:
            if endpoint == "chat":
                await provider.complete(CHAT, dep, endpoint="chat/completions", timeout_s=5)
            elif endpoint == "embeddings":
                await provider.embed({"input": "hi"}, dep, timeout_s=5)
            else:
                async for _ in provider.stream(CHAT, dep, endpoint="chat/completions", timeout_s=5):
                    pass
        assert "could not be built" in info.value.message
        assert "SECRETPROVIDERKEY" not in info.value.message


@pytest.mark.parametrize(
    "echo",
    [
        "Invalid key: {key_but_last_4}****",  # most of the key, its end starred
        "bad url https://x/v1?key={url_encoded}",  # a request URL echoed with the key
        '{{"error": {{"message": "bad key {slash_escaped}"}}}}',  # PHP's json_encode escapes "/"
    ],
)
async def test_a_key_echoed_in_part_or_encoded_is_masked(
    upstream: tuple[MockUpstream, str],
    provider: OpenAICompatibleProvider,
    monkeypatch: pytest.MonkeyPatch,
    echo: str,
) -> None:
    key = "sk-h3/EVILSECRET+key/0123456789abcdef"
    monkeypatch.setenv(KEY_ENV, key)
    mock, url = upstream
    text = echo.format(
        key_but_last_4=key[:-4],
        url_encoded=quote(key, safe=""),
        slash_escaped=key.replace("/", "\\/"),
    )
    mock.knobs.update(fail_next=1, fail_status=500, fail_message=text, fail_text=True)
    message = (await refusal(provider, deployment(url))).message
    assert "EVILSECRET" not in message and "0123456789" not in message, message


def test_a_key_json_escaped_in_a_litellm_error_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    # litellm passes the provider's raw body; `_clean` decodes it after the masking, so a key
    # with "/" sent back as "\/" (a valid JSON escape) came out whole.
    key = "sk-h3/EVILSECRET+key/0123456789abcdef"
    monkeypatch.setenv(KEY_ENV, key)
    body = '{"error": {"message": "invalid x-api-key ' + key.replace("/", "\\/") + '"}}'
    exc = RuntimeError("litellm.AuthenticationError: AnthropicException - " + body)
    exc.status_code = 401  # type: ignore[attr-defined]
    err = _translate(deployment("http://unused"), exc)
    assert "invalid x-api-key" in err.message and "EVILSECRET" not in err.message, err.message


async def test_the_operators_account_ids_are_masked(
    upstream: tuple[MockUpstream, str], provider: OpenAICompatibleProvider, key: str
) -> None:
    """OpenAI names the operator's organisation in rate-limit errors and echoes its own masked
    form of the key (its last four characters): neither is the tenant's business."""
    mock, url = upstream
    text = (
        "Rate limit reached for gpt-4o in organization org-Q3xYz9AbCdEfGh1234 on tokens per min "
        "(TPM): Limit 30000. Project proj_Ab12Cd34Ef56. Incorrect API key provided: "
        "sk-proj-********************************************9abc."
    )
    mock.knobs.update(fail_next=1, fail_status=429, fail_message=text)
    message = (await refusal(provider, deployment(url))).message
    assert "Q3xYz9" not in message and "Ab12Cd34" not in message and "9abc" not in message
    assert "organization org-*** on tokens per min" in message
    assert "Rate limit reached for gpt-4o" in message  # the rest reads as the upstream wrote it


def test_account_masking_leaves_ordinary_words_alone() -> None:
    from gateway.providers.base import mask_accounts

    for text in ("reorganise the org chart", "project-level quota", "task-123 is done"):
        assert mask_accounts(text) == text
