"""Valid OpenAI answer controls that litellm cannot take: `tool_choice: allowed_tools` (which
the Responses API's translation also sends) raised "Invalid tool choice" in litellm, and a
`response_format.json_schema` without its optional `schema` a KeyError, each a 502 that counted
against the deployment's breaker. The upstream is a real aiohttp server in-process."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from gateway.accounting.pricing import Price
from gateway.errors import InvalidRequest
from gateway.pipeline.dispatch import UNSERVABLE
from gateway.providers.litellm_adapter import LiteLLMProvider
from gateway.routing.catalog import Deployment
from gateway.settings import DeploymentConfig
from tests.unit.providers.conftest import ServeMessages, anthropic_deployment

KEY_ENV = "TG_TEST_LITELLM_CONTROLS_KEY"
MSGS = [{"role": "user", "content": "weather in Paris?"}]


def tool(name: str) -> dict[str, Any]:
    params = {"type": "object", "properties": {"city": {"type": "string"}}}
    return {"type": "function", "function": {"name": name, "parameters": params}}


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-ant-test")


def claude_calling(seen: list[dict[str, Any]]) -> Any:
    """Anthropic answering with a call of the first tool it was given; records each body."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        name = body["tools"][0]["name"]
        call = {"type": "tool_use", "id": "toolu_1", "name": name, "input": {"city": "Paris"}}
        return web.json_response(
            {
                "id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                "content": [call], "stop_reason": "tool_use", "stop_sequence": None,
                "usage": {"input_tokens": 20, "output_tokens": 10},
            }
        )  # fmt: skip

    return handler


@pytest.mark.parametrize(("mode", "anthropic_choice"), [("required", "any"), ("auto", "auto")])
async def test_allowed_tools_reach_the_provider_as_the_allowed_tools_alone(
    serve_messages: ServeMessages, mode: str, anthropic_choice: str
) -> None:
    seen: list[dict[str, Any]] = []
    base = await serve_messages(claude_calling(seen))
    allowed = {"mode": mode, "tools": [{"type": "function", "function": {"name": "get_weather"}}]}
    body = {
        "messages": MSGS,
        "max_tokens": 32,
        "tools": [tool("get_time"), tool("get_weather")],
        "tool_choice": {"type": "allowed_tools", "allowed_tools": allowed},
    }
    answer = await LiteLLMProvider().complete(
        body, anthropic_deployment(base, KEY_ENV), endpoint="chat/completions", timeout_s=5
    )
    call = answer["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert [t["name"] for t in seen[0]["tools"]] == ["get_weather"]
    assert seen[0]["tool_choice"]["type"] == anthropic_choice
    assert body["tool_choice"]["type"] == "allowed_tools"  # the client's body is left alone


async def test_a_json_schema_without_its_schema_is_refused_for_another_deployment(
    serve_messages: ServeMessages,
) -> None:
    seen: list[dict[str, Any]] = []
    base = await serve_messages(claude_calling(seen))
    body = {
        "messages": MSGS,
        "max_tokens": 32,
        "response_format": {"type": "json_schema", "json_schema": {"name": "weather"}},
    }
    with pytest.raises(InvalidRequest) as caught:
        await LiteLLMProvider().complete(
            body, anthropic_deployment(base, KEY_ENV), endpoint="chat/completions", timeout_s=5
        )
    assert caught.value.param == "response_format.json_schema.schema"
    assert caught.value.code in UNSERVABLE  # the group's next deployment may serve it
    assert not seen


def bedrock_llama() -> Deployment:
    """Bedrock's Llama 3.1: tools mapped by litellm, `tool_choice` not (Amazon Nova and
    Fireworks' models alike)."""
    config = DeploymentConfig(
        name="d", model="m", provider="bedrock",
        upstream_model="meta.llama3-1-70b-instruct-v1:0",
        api_base="http://127.0.0.1:9", api_key_env=KEY_ENV,  # never reached: refused first
    )  # fmt: skip
    return Deployment(config=config, price=Price(), price_source="config")


ALLOWED_REQUIRED = {
    "type": "allowed_tools",
    "allowed_tools": {
        "mode": "required",
        "tools": [{"type": "function", "function": {"name": "f"}}],
    },
}


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "f"}}, ALLOWED_REQUIRED]
)
async def test_a_forced_tool_call_a_provider_cannot_force_is_a_400_not_prose(choice: Any) -> None:
    """litellm drops the `tool_choice` such a provider lacks: an agent that forced a call got
    whatever the model chose, prose with a 200."""
    body = {"messages": MSGS, "max_tokens": 32, "tools": [tool("f")], "tool_choice": choice}
    with pytest.raises(InvalidRequest) as caught:
        await LiteLLMProvider().complete(
            body, bedrock_llama(), endpoint="chat/completions", timeout_s=5
        )
    assert (caught.value.code, caught.value.param) == ("unsupported_parameter", "tool_choice")


@pytest.mark.parametrize("choice", [None, "auto"])
def test_a_tool_choice_that_forces_nothing_passes_where_it_is_not_mapped(choice: Any) -> None:
    body = {"messages": MSGS, "tools": [tool("f")], "tool_choice": choice}
    LiteLLMProvider()._refuse_lacking(body, bedrock_llama())
    allowed_auto = {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}
    LiteLLMProvider()._refuse_lacking({**body, "tool_choice": allowed_auto}, bedrock_llama())


@pytest.mark.parametrize(
    "choice",
    [
        {"type": "custom", "custom": {"name": "grep"}},  # OpenAI's custom tools
        {"type": "tool", "name": "get_weather"},  # Anthropic's own form, sent to the OpenAI API
    ],
)
async def test_a_tool_choice_litellm_cannot_read_is_a_400_not_a_failing_deployment(
    serve_messages: ServeMessages, choice: Any
) -> None:
    """litellm reads OpenAI's function forms only and raised "Invalid tool choice" on others:
    a 502 that counted against the deployment's breaker."""
    seen: list[dict[str, Any]] = []
    base = await serve_messages(claude_calling(seen))
    body = {
        "messages": MSGS,
        "max_tokens": 32,
        "tools": [tool("get_weather")],
        "tool_choice": choice,
    }
    with pytest.raises(InvalidRequest) as caught:
        await LiteLLMProvider().complete(
            body, anthropic_deployment(base, KEY_ENV), endpoint="chat/completions", timeout_s=5
        )
    assert (caught.value.code, caught.value.param) == ("unsupported_parameter", "tool_choice")
    assert not seen


@pytest.mark.parametrize(
    "tools",
    [
        [{"type": "custom", "custom": {"name": "grep"}}],  # GPT-5's custom tools: KeyError
        [{"type": "code_interpreter"}],  # "Unsupported tool type: code_interpreter"
    ],
)
async def test_a_request_litellm_cannot_map_for_the_provider_is_not_the_deployment_failing(
    serve_messages: ServeMessages, tools: list[dict[str, Any]]
) -> None:
    """litellm raises while mapping the request's parameters to the provider's (before anything
    is sent): that is this request, not the deployment's health. It was a 502 counted against
    the breaker; now the group's next deployment may serve it, and no breaker counts it."""
    seen: list[dict[str, Any]] = []
    base = await serve_messages(claude_calling(seen))
    body = {"messages": MSGS, "max_tokens": 32, "tools": tools}
    with pytest.raises(InvalidRequest) as caught:
        await LiteLLMProvider().complete(
            body, anthropic_deployment(base, KEY_ENV), endpoint="chat/completions", timeout_s=5
        )
    assert caught.value.code in UNSERVABLE
    assert not seen
