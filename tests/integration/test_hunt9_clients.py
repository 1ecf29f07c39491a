"""Client libraries other than the Python SDK, as they talk on the wire (hardening round 8,
hunter h5). Each test sends the exact request the library sends, with httpx.

The Node `openai` SDK asks `/v1/embeddings` for `encoding_format: "base64"` whenever its caller
did not choose a format, and decodes every `embedding` it gets back as base64 float32 without
looking: an upstream that ignores the field (litellm drops it under `drop_params` for providers
without it; many OpenAI-compatible servers speak floats only) answered floats, which the SDK
turned into a vector of zeros and garbage with a 200.
"""

from __future__ import annotations

import base64
import struct

import httpx
import pytest

from tests.support.servers import GatewayServer, MockUpstreamServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def key(gateway: GatewayServer) -> str:
    return gateway.new_tenant()[1]


def _embed(gateway: GatewayServer, key: str, **body: object) -> httpx.Response:
    return httpx.post(
        gateway.url + "/embeddings",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "text-embedding-3-small", **body},
        timeout=30,
    )


def test_base64_embeddings_are_base64_float32_when_the_upstream_answers_floats(
    gateway: GatewayServer, key: str, mock_upstream: MockUpstreamServer
) -> None:
    floats = _embed(gateway, key, input=["alpha", "beta"], encoding_format="float")
    assert floats.status_code == 200, floats.text
    # what openai-node 6 sends for `client.embeddings.create({model, input})`
    r = _embed(gateway, key, input=["alpha", "beta"], encoding_format="base64")
    assert r.status_code == 200, r.text
    assert mock_upstream.received()[-1]["body"]["encoding_format"] == "base64"
    for got, want in zip(r.json()["data"], floats.json()["data"], strict=True):
        assert isinstance(got["embedding"], str)
        raw = base64.b64decode(got["embedding"])
        vector = struct.unpack(f"<{len(raw) // 4}f", raw)
        assert vector == pytest.approx(want["embedding"], rel=1e-6)
    assert r.json()["usage"] == floats.json()["usage"]


def test_float_embeddings_stay_floats(gateway: GatewayServer, key: str) -> None:
    for body in ({}, {"encoding_format": "float"}):
        r = _embed(gateway, key, input="gamma", **body)
        assert r.status_code == 200, r.text
        vector = r.json()["data"][0]["embedding"]
        assert isinstance(vector, list) and all(isinstance(x, float) for x in vector)


def test_dimensions_the_upstream_ignores_are_a_400_not_full_size_vectors(
    gateway: GatewayServer, key: str, mock_upstream: MockUpstreamServer
) -> None:
    """The mock answers 8-dimensional vectors whatever `dimensions` says, as litellm's
    providers without the field (it is dropped) and some OpenAI-compatible servers do."""
    for encoding in ("float", "base64"):
        r = _embed(gateway, key, input="delta", dimensions=4, encoding_format=encoding)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert (error["code"], error["param"]) == ("unsupported_parameter", "dimensions")
        assert "8-dimensional vectors for 4" in error["message"]
    assert mock_upstream.received()[-1]["body"]["dimensions"] == 4
    ok = _embed(gateway, key, input="delta", dimensions=8)
    assert ok.status_code == 200 and len(ok.json()["data"][0]["embedding"]) == 8
