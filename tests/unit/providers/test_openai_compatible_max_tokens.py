"""OpenAI's reasoning models (o-series, gpt-5) refuse `max_tokens` ("Use 'max_completion_tokens'
instead"), and the gateway itself writes `max_tokens` when it translates a Responses request's
`max_output_tokens`: `responses.create(model=..., max_output_tokens=100)`, which works against
api.openai.com, was a 400 through the gateway. The provider now sends the limit again as
`max_completion_tokens` when an upstream refuses `max_tokens` that way, and remembers it for the
deployment. The upstream is a real aiohttp server in-process."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.errors import InvalidRequest
from gateway.providers.openai_compatible import OpenAICompatibleProvider
from tests.unit.providers.conftest import (
    USAGE,
    ServeRoute,
    delta,
    event,
    openai_compatible_deployment,
)

CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 30}
REFUSAL = {
    "error": {
        "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
        "Use 'max_completion_tokens' instead.",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "unsupported_parameter",
    }
}
ANSWER = {
    "id": "c",
    "object": "chat.completion",
    "created": 1,
    "model": "o3",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


class ReasoningModel:
    """An upstream that, like OpenAI's reasoning models, takes only `max_completion_tokens`."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.bodies.append(body)
        if "max_tokens" in body:
            return web.json_response(REFUSAL, status=400)
        if not body.get("stream"):
            return web.json_response(ANSWER)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for chunk in (delta("hi"), delta("", "stop"), USAGE):
            await resp.write(event(chunk))
        await resp.write(b"data: [DONE]\n\n")
        return resp


dep = openai_compatible_deployment


@pytest.mark.parametrize("stream", [False, True])
async def test_max_tokens_refused_is_sent_as_max_completion_tokens_and_remembered(
    serve_route: ServeRoute, provider: OpenAICompatibleProvider, stream: bool
) -> None:
    upstream = ReasoningModel()
    url = (await serve_route("/v1/chat/completions", upstream.handle)).rstrip("/") + "/v1"
    for _ in range(2):
        if stream:
            got = [
                c
                async for c in provider.stream(
                    CHAT, dep(url), endpoint="chat/completions", timeout_s=5
                )
            ]
            assert got[0]["choices"][0]["delta"]["content"] == "hi"
        else:
            out = await provider.complete(CHAT, dep(url), endpoint="chat/completions", timeout_s=5)
            assert out["choices"][0]["message"]["content"] == "hi"
    limits = [(b.get("max_tokens"), b.get("max_completion_tokens")) for b in upstream.bodies]
    # refused once, then sent as max_completion_tokens; the second request goes that way at once
    assert limits == [(30, None), (None, 30), (None, 30)]
    assert CHAT["max_tokens"] == 30  # the caller's body is not changed


async def test_other_refusals_of_max_tokens_go_back_as_they_are(
    serve_route: ServeRoute, provider: OpenAICompatibleProvider
) -> None:
    async def too_large(request: web.Request) -> web.StreamResponse:
        await request.read()
        body = {"error": {**REFUSAL["error"], "message": "max_tokens is too large", "code": None}}
        return web.json_response(body, status=400)

    url = (await serve_route("/v1/chat/completions", too_large)).rstrip("/") + "/v1"
    with pytest.raises(InvalidRequest) as info:
        await provider.complete(CHAT, dep(url), endpoint="chat/completions", timeout_s=5)
    assert "too large" in info.value.message and info.value.param == "max_tokens"
