"""Embeddings through litellm come back in the encoding the client asked for.

The Node `openai` SDK asks for `encoding_format: "base64"` by default and decodes the answer
unchecked. litellm drops the field (`drop_params`) for providers without it (Ollama, Gemini...),
which answered floats, decoded into zeros and noise; for Bedrock's Titan v2 it asks for
*binary* embeddings instead (one bit a dimension), a different vector altogether. The provider
is asked for floats; the gateway encodes them."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest
from aiohttp import web

from gateway.accounting.pricing import Price
from gateway.errors import InvalidRequest
from gateway.providers.litellm_adapter import LiteLLMProvider
from gateway.routing.catalog import Deployment
from gateway.settings import DeploymentConfig
from tests.unit.providers.conftest import ServeRoute

VECTOR = [0.5, -0.25, 1.0]


async def _ollama(serve_route: ServeRoute, seen: list[dict[str, Any]]) -> Deployment:
    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(await request.json())
        return web.json_response({"model": "nomic", "embeddings": [VECTOR], "prompt_eval_count": 2})

    base = await serve_route("/api/embed", handler)
    config = DeploymentConfig(
        name="d", model="m", provider="ollama", upstream_model="nomic", api_base=base.rstrip("/")
    )
    return Deployment(config=config, price=Price(), price_source="config")


async def test_a_base64_request_gets_base64_when_litellm_drops_the_format(
    serve_route: ServeRoute,
) -> None:
    seen: list[dict[str, Any]] = []
    dep = await _ollama(serve_route, seen)
    body = {"model": "m", "input": ["hi"], "encoding_format": "base64"}
    out = await LiteLLMProvider().embed(body, dep, timeout_s=5)
    assert "encoding_format" not in seen[0]  # the provider never saw it
    raw = base64.b64decode(out["data"][0]["embedding"])
    assert list(struct.unpack("<3f", raw)) == VECTOR
    assert out["usage"]["prompt_tokens"] == 2


async def test_bedrock_is_asked_for_float_embeddings_not_binary(
    serve_route: ServeRoute, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (("AWS_ACCESS_KEY_ID", "AKIATEST"), ("AWS_SECRET_ACCESS_KEY", "test")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_REGION_NAME", "us-east-1")
    seen: list[dict[str, Any]] = []

    async def titan(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        binary = "binary" in body.get("embeddingTypes", ())
        kinds = {"binary": [1, 0, 1]} if binary else {"float": VECTOR}
        return web.json_response(
            {"embedding": VECTOR, "inputTextTokenCount": 2, "embeddingsByType": kinds}
        )

    base = await serve_route("/model/amazon.titan-embed-text-v2:0/invoke", titan)
    config = DeploymentConfig(
        name="d",
        model="m",
        provider="bedrock",
        upstream_model="amazon.titan-embed-text-v2:0",
        api_base=base.rstrip("/"),
    )
    dep = Deployment(config=config, price=Price(), price_source="config")
    body = {"model": "m", "input": "hi", "encoding_format": "base64"}
    out = await LiteLLMProvider().embed(body, dep, timeout_s=5)
    assert "binary" not in seen[0].get("embeddingTypes", ())
    raw = base64.b64decode(out["data"][0]["embedding"])
    assert list(struct.unpack("<3f", raw)) == VECTOR


async def test_a_float_request_gets_floats(serve_route: ServeRoute) -> None:
    dep = await _ollama(serve_route, [])
    out = await LiteLLMProvider().embed({"model": "m", "input": "hi"}, dep, timeout_s=5)
    assert out["data"][0]["embedding"] == VECTOR


async def test_token_ids_reach_a_text_only_provider_as_text(
    serve_route: ServeRoute, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LangChain's OpenAIEmbeddings sends tiktoken ids by default. litellm refuses them for
    Cohere (and Gemini) in its own code, which read as the deployment failing: a 502 counted
    by its breaker, so a few LangChain calls took the embedding model down for everyone."""
    monkeypatch.setenv("TG_TEST_COHERE_KEY", "co-test")
    seen: list[dict[str, Any]] = []

    async def cohere(request: web.Request) -> web.StreamResponse:
        seen.append(await request.json())
        vectors = [VECTOR for _ in seen[-1]["texts"]]
        return web.json_response(
            {"id": "e", "embeddings": {"float": vectors}, "meta": {"billed_units": {}}}
        )

    base = await serve_route("/", cohere)
    config = DeploymentConfig(
        name="d",
        model="m",
        provider="cohere",
        upstream_model="embed-english-v3.0",
        api_base=base,
        api_key_env="TG_TEST_COHERE_KEY",
    )
    dep = Deployment(config=config, price=Price(), price_source="config")
    # tiktoken's cl100k_base ids of "a longer document about cats" and "b", as LangChain sends
    body = {"model": "text-embedding-3-small", "input": [[64, 5129, 2246, 922, 19987], [65]]}
    out = await LiteLLMProvider().embed(body, dep, timeout_s=5)
    assert seen[0]["texts"] == ["a longer document about cats", "b"]
    assert [item["embedding"] for item in out["data"]] == [VECTOR, VECTOR]


async def test_token_ids_past_the_vocabulary_are_a_400(serve_route: ServeRoute) -> None:
    dep = await _ollama(serve_route, [])
    with pytest.raises(InvalidRequest) as info:
        await LiteLLMProvider().embed({"model": "m", "input": [[1, 10**9]]}, dep, timeout_s=5)
    assert (info.value.status_code, info.value.param) == (400, "input[0]")
