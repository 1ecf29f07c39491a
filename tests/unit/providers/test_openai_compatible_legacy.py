"""Legacy `/v1/completions` on a chat-only upstream: OpenAI answers a chat model there with a 404
("This is a chat model and not supported in the v1/completions endpoint"), as do upstreams with
no such route. Taken for the deployment's own fault, five such requests (two SDK calls with its
default retries) opened the deployment's breaker, and its chat traffic got 503s. A 404 on that
endpoint says only that this deployment cannot serve legacy completions: a 400
`unsupported_parameter` (another deployment of the group may; no breaker count). The upstream is
a real aiohttp server in-process."""

from __future__ import annotations

import pytest
from aiohttp import web

from gateway.errors import InvalidRequest, UpstreamError
from gateway.providers.openai_compatible import OpenAICompatibleProvider
from tests.unit.providers.conftest import ServeRoute, openai_compatible_deployment

CHAT_MODEL = (
    "This is a chat model and not supported in the v1/completions endpoint. "
    "Did you mean to use v1/chat/completions?"
)


async def chat_model(request: web.Request) -> web.StreamResponse:
    await request.read()
    error = {"message": CHAT_MODEL, "type": "invalid_request_error", "param": "model", "code": None}
    return web.json_response({"error": error}, status=404)


dep = openai_compatible_deployment


@pytest.mark.parametrize("stream", [False, True])
async def test_a_404_on_legacy_completions_is_unservable_not_the_deployments_fault(
    serve_route: ServeRoute, provider: OpenAICompatibleProvider, stream: bool
) -> None:
    url = (await serve_route("/v1/completions", chat_model)).rstrip("/") + "/v1"
    body = {"prompt": "hello", "max_tokens": 5}
    with pytest.raises(InvalidRequest) as info:
        if stream:
            async for _ in provider.stream(body, dep(url), endpoint="completions", timeout_s=5):
                pass
        else:
            await provider.complete(body, dep(url), endpoint="completions", timeout_s=5)
    assert (info.value.code, info.value.param) == ("unsupported_parameter", "model")
    assert CHAT_MODEL in info.value.message


async def test_a_404_on_embeddings_is_unservable_too(
    serve_route: ServeRoute, provider: OpenAICompatibleProvider
) -> None:
    url = (await serve_route("/v1/embeddings", chat_model)).rstrip("/") + "/v1"
    with pytest.raises(InvalidRequest) as info:
        await provider.embed({"input": "hello"}, dep(url), timeout_s=5)
    assert (info.value.code, info.value.param) == ("unsupported_parameter", "model")


async def test_an_embedding_model_asked_for_chat_is_unservable(
    serve_route: ServeRoute, provider: OpenAICompatibleProvider
) -> None:
    async def not_chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        message = (
            "This is not a chat model and thus not supported in the v1/chat/completions "
            "endpoint. Did you mean to use v1/completions?"
        )
        error = {"message": message, "type": "invalid_request_error", "param": "model"}
        return web.json_response({"error": error}, status=404)

    url = (await serve_route("/v1/chat/completions", not_chat)).rstrip("/") + "/v1"
    body = {"messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(InvalidRequest) as info:
        await provider.complete(body, dep(url), endpoint="chat/completions", timeout_s=5)
    assert info.value.code == "unsupported_parameter"


async def test_a_404_on_chat_is_still_the_deployments_fault(
    serve_route: ServeRoute, provider: OpenAICompatibleProvider
) -> None:
    async def no_model(request: web.Request) -> web.StreamResponse:
        await request.read()
        message = "The model `gpt-nope` does not exist or you do not have access to it."
        error = {"message": message, "type": "invalid_request_error", "code": "model_not_found"}
        return web.json_response({"error": error}, status=404)

    url = (await serve_route("/v1/chat/completions", no_model)).rstrip("/") + "/v1"
    body = {"messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(UpstreamError) as info:
        await provider.complete(body, dep(url), endpoint="chat/completions", timeout_s=5)
    assert (info.value.upstream_status, info.value.code) == (404, "upstream_not_found")
