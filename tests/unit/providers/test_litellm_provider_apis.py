"""Gemini, Azure OpenAI and OpenRouter through litellm, against local upstreams that answer in
each API's documented shapes: a stream cut before Gemini says why it stopped is an error, and
each provider's errors reach the client with their own message and OpenAI's codes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.accounting.pricing import Price
from gateway.errors import InvalidRequest, UpstreamError
from gateway.pipeline.dispatch import retryable
from gateway.providers.litellm_adapter import LiteLLMProvider, openai_shaped, options_problems
from gateway.routing.catalog import Deployment
from gateway.settings import DeploymentConfig
from tests.unit.providers.conftest import ServeRoute, sse_handler

KEY_ENV = "TG_TEST_LITELLM_APIS_KEY"
CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
# a stream as the pipeline sends it: with stream_options (the adapter then asks for usage)
STREAM = {**CHAT, "stream_options": {"include_usage": True}}
GEMINI_STREAM = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "provider-key-0123456789")


def deployment(provider: str, api_base: str, model: str) -> Deployment:
    config = DeploymentConfig(
        name="d",
        model="m",
        provider=provider,
        upstream_model=model,
        api_base=api_base,
        api_key_env=KEY_ENV,
    )
    return Deployment(config=config, price=Price(), price_source="config")


def gemini(base: str) -> Deployment:
    return deployment("gemini", base.rstrip("/") + "/v1beta", "gemini-2.5-flash")


def data(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"


def gemini_chunk(text: str | None, finish: str | None = None, **extra: Any) -> bytes:
    candidate: dict[str, Any] = {"index": 0}
    if text is not None:
        candidate["content"] = {"role": "model", "parts": [{"text": text}]}
    if finish:
        candidate["finishReason"] = finish
    usage = {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6}
    return data({"candidates": [candidate], "usageMetadata": usage, "responseId": "r", **extra})


async def stream(dep: Deployment) -> list[dict[str, Any]]:
    p = LiteLLMProvider()
    return [c async for c in p.stream(STREAM, dep, endpoint="chat/completions", timeout_s=5)]


def finishes(chunks: list[dict[str, Any]]) -> list[str]:
    return [
        c["choices"][0]["finish_reason"]
        for c in chunks
        if c.get("choices") and c["choices"][0].get("finish_reason")
    ]


async def test_a_gemini_stream_cut_before_its_finish_reason_is_an_error(
    serve_route: ServeRoute,
) -> None:
    # litellm maps every Gemini chunk to "stop": the cut answer passed for a whole one
    base = await serve_route(GEMINI_STREAM, sse_handler([gemini_chunk("Hello, ")]))
    got: list[dict[str, Any]] = []
    with pytest.raises(UpstreamError) as info:
        async for c in LiteLLMProvider().stream(
            STREAM, gemini(base), endpoint="chat/completions", timeout_s=5
        ):
            got.append(c)
    assert "ended the stream early" in info.value.message
    assert [c["choices"][0]["delta"].get("content") for c in got] == ["Hello, "]
    assert finishes(got) == []


@pytest.mark.parametrize(
    ("parts", "finish"),
    [
        ([gemini_chunk("Hello, "), gemini_chunk("world", "STOP")], "stop"),
        ([gemini_chunk("Hello, "), gemini_chunk("", "MAX_TOKENS")], "length"),
        ([gemini_chunk(None, "SAFETY")], "content_filter"),  # an answer blocked at once
    ],
)
async def test_a_gemini_stream_that_says_why_it_stopped_is_whole(
    serve_route: ServeRoute, parts: list[bytes], finish: str
) -> None:
    out = await stream(gemini(await serve_route(GEMINI_STREAM, sse_handler(parts))))
    assert finishes(out) == [finish]
    assert out[-1]["choices"] == [] and out[-1]["usage"]["prompt_tokens"] == 4


async def test_a_prompt_gemini_blocks_ends_a_stream_as_filtered(serve_route: ServeRoute) -> None:
    feedback = {"blockReason": "SAFETY", "safetyRatings": []}
    blocked = data({"promptFeedback": feedback, "usageMetadata": {"promptTokenCount": 4}})
    out = await stream(gemini(await serve_route(GEMINI_STREAM, sse_handler([blocked]))))
    assert finishes(out) == ["content_filter"]


async def test_an_openrouter_error_mid_stream_keeps_its_message(serve_route: ServeRoute) -> None:
    # OpenRouter's documented in-band error: a string code, which litellm fed to int()
    first = {"id": "g", "object": "chat.completion.chunk", "created": 0, "model": "a/b"}
    parts = [
        data({**first, "choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
        data(
            {
                **first,
                "error": {"code": "server_error", "message": "Provider disconnected"},
                "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
            }
        ),
        b"data: [DONE]\n\n",
    ]
    base = await serve_route("/api/v1/chat/completions", sse_handler(parts))
    with pytest.raises(UpstreamError) as info:
        await stream(deployment("openrouter", base.rstrip("/") + "/api/v1", "a/b"))
    assert "Provider disconnected" in info.value.message
    assert "invalid literal" not in info.value.message


def answering(status: int, body: dict[str, Any], indent: bool = False) -> Any:
    """A handler answering `body` with `status`; `indent`: pretty-printed, as Google's APIs do."""

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        text = orjson.dumps(body, option=orjson.OPT_INDENT_2 if indent else 0).decode()
        return web.Response(text=text, status=status, content_type="application/json")

    return handler


async def test_azures_content_filter_keeps_its_code(serve_route: ServeRoute) -> None:
    said = "The response was filtered due to the prompt triggering Azure OpenAI's content policy."
    body = {
        "error": {
            "message": said,
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation"},
        }
    }
    base = await serve_route("/openai/deployments/prod-4o/chat/completions", answering(400, body))
    dep = deployment("azure", base, "prod-4o")
    with pytest.raises(InvalidRequest) as info:
        await LiteLLMProvider().complete(CHAT, dep, endpoint="chat/completions", timeout_s=5)
    assert (info.value.code, info.value.param) == ("content_filter", "prompt")
    assert info.value.message == f"Deployment 'd' rejected the request: {said}"


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_gemini_refusal_says_geminis_message(
    serve_route: ServeRoute, streamed: bool
) -> None:
    # Google's error bodies are pretty-printed: the message was cut to its first line, "{"
    said = 'Invalid JSON payload received. Unknown name "foo": Cannot find field.'
    body = {"error": {"code": 400, "message": said, "status": "INVALID_ARGUMENT"}}
    action = GEMINI_STREAM if streamed else "/v1beta/models/gemini-2.5-flash:generateContent"
    base = await serve_route(action, answering(400, body, indent=True))
    with pytest.raises(InvalidRequest) as info:
        if streamed:
            await stream(gemini(base))
        else:
            await LiteLLMProvider().complete(
                CHAT, gemini(base), endpoint="chat/completions", timeout_s=5
            )
    assert info.value.message == f"Deployment 'd' rejected the request: {said}"


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_gemini_rate_limit_says_when_to_retry(
    serve_route: ServeRoute, streamed: bool
) -> None:
    # Gemini's wait is in the body's RetryInfo, not in a Retry-After header
    said = "You exceeded your current quota, please check your plan and billing details."
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "33.5s"}
    quota = {"@type": "type.googleapis.com/google.rpc.QuotaFailure"}
    error = {"code": 429, "message": said, "status": "RESOURCE_EXHAUSTED"}
    body = {"error": {**error, "details": [quota, retry]}}
    action = GEMINI_STREAM if streamed else "/v1beta/models/gemini-2.5-flash:generateContent"
    base = await serve_route(action, answering(429, body, indent=True))
    with pytest.raises(UpstreamError) as info:
        if streamed:
            await stream(gemini(base))
        else:
            await LiteLLMProvider().complete(
                CHAT, gemini(base), endpoint="chat/completions", timeout_s=5
            )
    assert (info.value.status_code, info.value.headers.get("Retry-After")) == (429, "34")
    assert info.value.message.endswith(f"(HTTP 429): {said}")


async def test_openrouter_out_of_credit_is_the_accounts_fault(serve_route: ServeRoute) -> None:
    said = "Insufficient credits. Add more using https://openrouter.ai/credits"
    base = await serve_route(
        "/api/v1/chat/completions", answering(402, {"error": {"code": 402, "message": said}})
    )
    dep = deployment("openrouter", base.rstrip("/") + "/api/v1", "a/b")
    with pytest.raises(UpstreamError) as info:
        await LiteLLMProvider().complete(CHAT, dep, endpoint="chat/completions", timeout_s=5)
    assert info.value.code == "upstream_quota_exhausted"
    assert info.value.headers.get("x-should-retry") == "false"
    assert info.value.message.endswith(f"(HTTP 402): {said}")
    assert retryable(info.value)  # another deployment of the group may serve it


async def test_an_azure_deployment_sends_its_own_api_version(serve_route: ServeRoute) -> None:
    # two Azure resources pinned to different api-versions: each deployment says its own
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        seen.append(request.query.get("api-version", ""))
        usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
        message = {"role": "assistant", "content": "hi"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        body = {"id": "c", "object": "chat.completion", "created": 0, "model": "gpt-4o"}
        return web.json_response({**body, "choices": [choice], "usage": usage})

    base = await serve_route("/openai/deployments/prod-4o/chat/completions", handler)
    p = LiteLLMProvider()
    for version in ("2024-10-21", "2024-06-01"):
        dep = deployment("azure", base, "prod-4o")
        dep = Deployment(
            config=dep.config.model_copy(update={"options": {"api_version": version}}),
            price=Price(),
            price_source="config",
        )
        await p.complete(CHAT, dep, endpoint="chat/completions", timeout_s=5)
    assert seen == ["2024-10-21", "2024-06-01"]


def test_options_litellm_would_ignore_are_named() -> None:
    config = DeploymentConfig(
        name="d",
        model="m",
        provider="azure",
        options={"api_version": 20241021, "apiversion": "2024-10-21"},
    )
    assert options_problems(config) == [
        "options.apiversion: not a setting of a litellm provider (known: api_version, "
        "vertex_project, vertex_location, aws_region_name)",
        "options.api_version: should be a string",
    ]


def test_provider_fields_that_say_nothing_are_no_delta() -> None:
    # every Anthropic stream had this chunk: an empty delta in all but name
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "claude"}
    blank = {"provider_specific_fields": {"citations": None, "thinking_blocks": None}}
    assert openai_shaped({**base, "choices": [{"index": 0, "delta": blank}]}) == []
    said = {"content": "Hi", "provider_specific_fields": {"citations": [{"url": "u"}]}}
    kept = {**base, "choices": [{"index": 0, "delta": said}]}
    assert openai_shaped(kept) == [kept]


@pytest.mark.skipif(
    importlib.util.find_spec("google.auth") is not None, reason="google-auth is installed"
)
async def test_a_vertex_deployment_without_google_auth_says_what_to_install() -> None:
    # was: 502 "No module named 'google.auth'" on every request
    config = DeploymentConfig(
        name="d",
        model="m",
        provider="vertex_ai",
        upstream_model="gemini-2.5-flash",
        options={"vertex_project": "p", "vertex_location": "europe-west4"},
    )
    dep = Deployment(config=config, price=Price(), price_source="config")
    with pytest.raises(UpstreamError) as info:
        await LiteLLMProvider().complete(CHAT, dep, endpoint="chat/completions", timeout_s=5)
    assert info.value.code == "deployment_misconfigured"
    assert "pip install google-auth" in info.value.message
    assert retryable(info.value)


async def test_a_bedrock_deployment_without_aws_credentials_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # was: 502 "'NoneType' object has no attribute 'access_key'" on every request
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_BEARER_TOKEN_BEDROCK", "AWS_ROLE_ARN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    config = DeploymentConfig(
        name="d",
        model="m",
        provider="bedrock",
        upstream_model="anthropic.claude-3-5-sonnet-20240620-v1:0",
        options={"aws_region_name": "eu-west-1"},
    )
    dep = Deployment(config=config, price=Price(), price_source="config")
    with pytest.raises(UpstreamError) as info:
        await LiteLLMProvider().complete(CHAT, dep, endpoint="chat/completions", timeout_s=5)
    assert info.value.code == "deployment_misconfigured"
    assert "no AWS credentials" in info.value.message


async def test_a_gemini_region_refusal_is_the_deployments_fault(serve_route: ServeRoute) -> None:
    # a 400 the client can do nothing about: the group's other deployments were never tried
    said = "User location is not supported for the API use."
    body = {"error": {"code": 400, "message": said, "status": "FAILED_PRECONDITION"}}
    base = await serve_route(
        "/v1beta/models/gemini-2.5-flash:generateContent", answering(400, body, indent=True)
    )
    with pytest.raises(UpstreamError) as info:
        await LiteLLMProvider().complete(
            CHAT, gemini(base), endpoint="chat/completions", timeout_s=5
        )
    assert info.value.code == "deployment_misconfigured"
    assert info.value.message.endswith(said)
    assert retryable(info.value)


async def test_an_anthropic_account_out_of_credit_is_the_deployments_fault(
    serve_route: ServeRoute,
) -> None:
    # Anthropic says it with a 400 invalid_request_error: the group's others were never tried
    said = "Your credit balance is too low to access the Anthropic API."
    error = {"type": "invalid_request_error", "message": said}
    base = await serve_route("/v1/messages", answering(400, {"type": "error", "error": error}))
    dep = deployment("anthropic", base, "claude-haiku-4-5")
    with pytest.raises(UpstreamError) as info:
        await LiteLLMProvider().complete(CHAT, dep, endpoint="chat/completions", timeout_s=5)
    assert info.value.code == "upstream_quota_exhausted"
    assert info.value.headers.get("x-should-retry") == "false"
    assert retryable(info.value)


async def test_an_azure_deployment_of_a_model_that_does_not_chat_is_misconfigured(
    serve_route: ServeRoute,
) -> None:
    said = "The chatCompletion operation does not work with the specified model."
    body = {"error": {"code": "OperationNotSupported", "message": said}}
    base = await serve_route("/openai/deployments/embed/chat/completions", answering(400, body))
    with pytest.raises(UpstreamError) as info:
        await LiteLLMProvider().complete(
            CHAT, deployment("azure", base, "embed"), endpoint="chat/completions", timeout_s=5
        )
    assert info.value.code == "deployment_misconfigured"
    assert retryable(info.value)


async def test_an_azure_target_uri_pasted_as_api_base_keeps_its_api_version(
    serve_route: ServeRoute,
) -> None:
    # the Azure portal shows the whole URI; litellm served it on its default api-version
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        seen.append(request.query.get("api-version", ""))
        choice = {"index": 0, "message": {"role": "assistant", "content": "hi"}}
        body = {"id": "c", "object": "chat.completion", "created": 0, "model": "gpt-4o"}
        return web.json_response({**body, "choices": [{**choice, "finish_reason": "stop"}]})

    path = "/openai/deployments/prod-4o/chat/completions"
    base = await serve_route(path, handler)
    uri = base.rstrip("/") + path + "?api-version=2024-10-21"
    dep = deployment("azure", uri, "prod-4o")
    await LiteLLMProvider().complete(CHAT, dep, endpoint="chat/completions", timeout_s=5)
    assert seen == ["2024-10-21"]


async def test_an_azure_refusal_keeps_its_code_and_param(serve_route: ServeRoute) -> None:
    # an o-series deployment refusing a parameter: dispatch tries the group's next deployment
    # for unsupported_parameter, and clients branch on code and param
    said = "Unsupported parameter: 'parallel_tool_calls' is not supported with this model."
    error = {"message": said, "type": "invalid_request_error", "param": "parallel_tool_calls",
             "code": "unsupported_parameter"}  # fmt: skip
    base = await serve_route(
        "/openai/deployments/o3/chat/completions", answering(400, {"error": error})
    )
    with pytest.raises(InvalidRequest) as info:
        await LiteLLMProvider().complete(
            CHAT, deployment("azure", base, "o3"), endpoint="chat/completions", timeout_s=5
        )
    assert (info.value.code, info.value.param) == ("unsupported_parameter", "parallel_tool_calls")


async def test_an_answer_without_text_says_content_null(serve_route: ServeRoute) -> None:
    # OpenAI sends "content": null (tool calls, a filtered answer); the key was missing
    candidate = {"index": 0, "finishReason": "SAFETY"}
    usage = {"promptTokenCount": 4, "totalTokenCount": 4}
    body = {"candidates": [candidate], "usageMetadata": usage, "responseId": "r"}
    base = await serve_route(
        "/v1beta/models/gemini-2.5-flash:generateContent", answering(200, body, indent=True)
    )
    answer = await LiteLLMProvider().complete(
        CHAT, gemini(base), endpoint="chat/completions", timeout_s=5
    )
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"] == {"role": "assistant", "content": None}


async def test_an_anthropic_answer_cut_by_the_context_window_says_length(
    serve_route: ServeRoute,
) -> None:
    # litellm did not know this stop_reason and said "stop": a cut answer shown (and cached) whole
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "The first part of a long"}],
        "stop_reason": "model_context_window_exceeded",
        "stop_sequence": None,
        "usage": {"input_tokens": 199000, "output_tokens": 1000},
    }
    base = await serve_route("/v1/messages", answering(200, body))
    dep = deployment("anthropic", base, "claude-sonnet-4-5")
    answer = await LiteLLMProvider().complete(CHAT, dep, endpoint="chat/completions", timeout_s=5)
    assert answer["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    "candidates",
    [[], [{"index": 0, "finishReason": "MALFORMED_FUNCTION_CALL"}]],
)
async def test_a_gemini_answer_without_a_candidate_is_a_failure(
    serve_route: ServeRoute, candidates: list[dict[str, Any]]
) -> None:
    # was a 200 with "choices": [] (the SDK's choices[0] raised IndexError): now the
    # deployment's failure, so the group falls back
    usage = {"promptTokenCount": 4, "totalTokenCount": 4}
    body = {"candidates": candidates, "usageMetadata": usage, "responseId": "r"}
    base = await serve_route(
        "/v1beta/models/gemini-2.5-flash:generateContent", answering(200, body, indent=True)
    )
    with pytest.raises(UpstreamError) as info:
        await LiteLLMProvider().complete(
            CHAT, gemini(base), endpoint="chat/completions", timeout_s=5
        )
    assert "no choices" in info.value.message
    assert retryable(info.value)


async def test_a_gemini_stream_with_a_malformed_call_and_nothing_else_is_a_failure(
    serve_route: ServeRoute,
) -> None:
    # litellm said "stop" for an empty answer: the agent saw the model reply nothing
    malformed = data(
        {
            "candidates": [{"index": 0, "finishReason": "MALFORMED_FUNCTION_CALL"}],
            "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4},
            "responseId": "r",
        }
    )
    base = await serve_route(GEMINI_STREAM, sse_handler([malformed]))
    with pytest.raises(UpstreamError) as info:
        await stream(gemini(base))
    assert info.value.message == "Deployment 'd' answered nothing (MALFORMED_FUNCTION_CALL)."
    assert retryable(info.value)
