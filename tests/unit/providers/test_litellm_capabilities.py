"""What litellm would drop silently is refused instead: with `drop_params` on, a parameter the
provider lacks (Anthropic: `n`, `logprobs`, `logit_bias`, audio) vanished on the way
and the client got a 200 with one choice, `logprobs: null`, an unbiased answer. Now it is a
400 `unsupported_parameter` naming it (dispatch then tries the group's next deployment), and
what asks for nothing (`n: 1`, `logprobs: false`) or only tags the request (`user`, `store`,
`metadata`, `seed`) still passes. The upstream is a real aiohttp server in-process."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from gateway.accounting.pricing import Price
from gateway.errors import InvalidRequest
from gateway.providers.litellm_adapter import LiteLLMProvider
from gateway.routing.catalog import Deployment
from gateway.settings import DeploymentConfig
from tests.unit.providers.conftest import ServeMessages, anthropic_deployment

KEY_ENV = "TG_TEST_LITELLM_CAPS_KEY"
CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-ant-test")


async def answer(request: web.Request) -> web.StreamResponse:
    await request.read()
    return web.json_response(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude",
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 1},
        }
    )


async def complete(
    base: str, extra: dict[str, Any], *, stream: bool = False, dep: Deployment | None = None
) -> None:
    dep = dep or anthropic_deployment(base, KEY_ENV)
    body = {**CHAT, **extra}
    if stream:
        async for _ in LiteLLMProvider().stream(
            body, dep, endpoint="chat/completions", timeout_s=5
        ):
            pass
    else:
        await LiteLLMProvider().complete(body, dep, endpoint="chat/completions", timeout_s=5)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 3}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"logprobs": True, "top_logprobs": 2}, "logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"modalities": ["text", "audio"], "audio": {"voice": "alloy"}}, "modalities"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_what_the_provider_lacks_is_a_400_naming_it(
    serve_messages: ServeMessages, extra: dict[str, Any], param: str, stream: bool
) -> None:
    base = await serve_messages(answer)
    with pytest.raises(InvalidRequest) as info:
        await complete(base, extra, stream=stream)
    assert (info.value.code, info.value.param, info.value.status_code) == (
        "unsupported_parameter",
        param,
        400,
    )
    assert f"'{param}'" in info.value.message and "'d'" in info.value.message


@pytest.mark.parametrize(
    "extra",
    [
        {"n": 1, "logprobs": False, "top_logprobs": 0, "logit_bias": {}},
        {"presence_penalty": 0, "frequency_penalty": 0.0, "modalities": ["text"]},
        # sampling hints, as temperature: dropped where the provider lacks them, not refused
        {"presence_penalty": 0.5, "frequency_penalty": -1},
        {"user": "u1", "store": True, "metadata": {"a": "b"}, "seed": 7},
        {"service_tier": "auto", "prediction": {"type": "content", "content": "hi"}},
        {"response_format": {"type": "text"}, "stop": ["x"], "temperature": 0.2},
    ],
)
async def test_what_asks_for_nothing_or_only_tags_the_request_passes(
    serve_messages: ServeMessages, extra: dict[str, Any]
) -> None:
    base = await serve_messages(answer)
    await complete(base, extra)


@pytest.mark.parametrize("stream", [False, True])
async def test_legacy_completions_are_unservable_here_so_a_group_can_fall_back(
    serve_messages: ServeMessages, stream: bool
) -> None:
    """A group mixing a litellm deployment with an OpenAI-compatible one answered every
    `/v1/completions` request with the litellm one's 400 when the router ranked it first."""
    base = await serve_messages(answer)
    dep = anthropic_deployment(base, KEY_ENV)
    body = {"prompt": "hello", "max_tokens": 5}
    with pytest.raises(InvalidRequest) as info:
        if stream:
            async for _ in LiteLLMProvider().stream(body, dep, endpoint="completions", timeout_s=5):
                pass
        else:
            await LiteLLMProvider().complete(body, dep, endpoint="completions", timeout_s=5)
    assert (info.value.code, info.value.param) == ("unsupported_parameter", "model")
    assert "/v1/chat/completions" in info.value.message


async def test_legacy_functions_where_litellm_maps_only_tools_are_refused(
    serve_messages: ServeMessages,
) -> None:
    """litellm maps Anthropic's (and Mistral's) tools but drops the legacy `functions` list:
    the model answered prose and the client's `message.function_call` was never there."""
    base = await serve_messages(answer)
    functions = [{"name": "get_weather", "parameters": {"type": "object", "properties": {}}}]
    with pytest.raises(InvalidRequest) as info:
        await complete(base, {"functions": functions, "function_call": "auto"})
    assert (info.value.code, info.value.param) == ("unsupported_parameter", "functions")
    assert "'tools'" in info.value.message
    await complete(base, {"functions": []})  # an empty list asks for nothing


def _cohere() -> Deployment:
    config = DeploymentConfig(
        name="d",
        model="m",
        provider="cohere_chat",
        upstream_model="command-r",
        api_base="http://127.0.0.1:9",  # never reached: the refusal comes first
        api_key_env=KEY_ENV,
    )
    return Deployment(config=config, price=Price(), price_source="config")


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "object"}}},
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_structured_output_a_provider_lacks_is_a_400_not_free_text(
    response_format: dict[str, Any], stream: bool
) -> None:
    """litellm has no `response_format` for Cohere (nor Replicate) and dropped it: the answer
    was free text with a 200, and LangChain's `with_structured_output`, the AI SDK's
    `generateObject` or the SDK's `parse()` failed on it client-side."""
    body = {**CHAT, "response_format": response_format}
    with pytest.raises(InvalidRequest) as info:
        if stream:
            async for _ in LiteLLMProvider().stream(
                body, _cohere(), endpoint="chat/completions", timeout_s=5
            ):
                pass
        else:
            await LiteLLMProvider().complete(
                body, _cohere(), endpoint="chat/completions", timeout_s=5
            )
    assert (info.value.code, info.value.param) == ("unsupported_parameter", "response_format")


def test_a_text_response_format_asks_for_nothing() -> None:
    LiteLLMProvider()._refuse_lacking({**CHAT, "response_format": {"type": "text"}}, _cohere())


@pytest.mark.parametrize("stream", [False, True])
async def test_tools_a_provider_cannot_call_are_a_400_not_prose(stream: bool) -> None:
    """Bedrock's Llama 3 has no tool calling in litellm: the tools vanished and an agent got a
    prose answer with a 200. Refused before anything is sent (hunt9 h5)."""
    config = DeploymentConfig(
        name="d", model="m", provider="bedrock", upstream_model="meta.llama3-8b-instruct-v1:0",
        api_base="http://127.0.0.1:9", api_key_env=KEY_ENV,
    )  # fmt: skip
    dep = Deployment(config=config, price=Price(), price_source="config")
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with pytest.raises(InvalidRequest) as info:
        await complete("unused", {"tools": tools}, stream=stream, dep=dep)
    assert (info.value.code, info.value.param) == ("unsupported_parameter", "tools")


async def test_tools_pass_where_litellm_maps_them(serve_messages: ServeMessages) -> None:
    base = await serve_messages(answer)
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    await complete(base, {"tools": tools})  # Anthropic: mapped, sent
