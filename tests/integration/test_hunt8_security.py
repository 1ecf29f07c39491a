"""Hunt round 7, secrets and the admin surface: a request's key is checked before its body is
decompressed and parsed, on the fast lane and on the FastAPI routes alike.

A gzip body of ~9 KB that inflates to 3.6 MB of small JSON objects held a worker's event loop
for ~3 s while it was inflated, parsed and depth-walked, and only then was the key found
wrong: anyone who could reach the port, without a key, could stall every tenant's requests.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import GatewayServer, MockUpstreamServer, mock_deployment

PATHS = ["/chat/completions", "/completions", "/embeddings", "/responses"]
# Each of these bodies is refused (400 or 415) once it is decoded; without a valid key the
# client must get the 401 first, and the gateway must not have decoded anything.
BODIES = [
    (b"not gzip at all", {"content-encoding": "gzip"}),
    (gzip.compress(b"{not json"), {"content-encoding": "gzip"}),
    (b"{not json", {}),
    (b"{}", {"content-encoding": "br"}),
]


@pytest.fixture(scope="module")
def slow_lane(
    session_tmp: Path, pg_url: str, mock_upstream: MockUpstreamServer
) -> Iterator[GatewayServer]:
    """A gateway with the fast lane off: the FastAPI routes answer the POSTs."""
    server = GatewayServer(
        session_tmp,
        pg_url,
        [mock_deployment("mock-mini", "gpt-4o-mini", mock_upstream)],
        extra_env={"THRIFTGATE_FAST_LANE": "false"},
    )
    yield server
    server.stop()


@pytest.fixture(params=["fast_lane", "fastapi_routes"])
def gw(request: pytest.FixtureRequest, gateway: GatewayServer) -> GatewayServer:
    if request.param == "fast_lane":
        return gateway
    server: GatewayServer = request.getfixturevalue("slow_lane")
    return server


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("body", "headers"), BODIES)
@pytest.mark.parametrize("auth", [None, "Bearer tg-not-a-real-key"])
def test_a_body_without_a_valid_key_gets_401_before_it_is_decoded(
    gw: GatewayServer, path: str, body: bytes, headers: dict[str, str], auth: str | None
) -> None:
    sent = {"content-type": "application/json", **headers}
    if auth is not None:
        sent["authorization"] = auth
    r = httpx.post(gw.url + path, content=body, headers=sent, timeout=30)
    assert r.status_code == 401, r.text
    err = r.json()["error"]
    assert err["code"] in ("missing_api_key", "invalid_api_key") and err["message"]
    assert r.headers.get("x-request-id")


@pytest.mark.parametrize(("body", "headers"), BODIES)
def test_with_a_valid_key_a_bad_body_is_still_refused_as_before(
    gw: GatewayServer, body: bytes, headers: dict[str, str]
) -> None:
    _, key = gw.new_tenant()
    sent = {"content-type": "application/json", "authorization": f"Bearer {key}", **headers}
    r = httpx.post(gw.url + "/chat/completions", content=body, headers=sent, timeout=30)
    assert r.status_code == (415 if headers.get("content-encoding") == "br" else 400), r.text
    assert r.json()["error"]["code"] in (
        "invalid_body",
        "invalid_json",
        "unsupported_media_type",
    )


def test_a_tenant_body_of_too_many_json_objects_is_refused_before_it_is_parsed(
    gw: GatewayServer,
) -> None:
    # With a valid key the same kind of body (9 KB gzip, 3.6 MB of `{}`) still took ~3 s of the
    # event loop to parse and depth-walk: one tenant stalled every other for seconds.
    _, key = gw.new_tenant()
    objects = b",".join([b'{"a":[{}]}'] * 120_000)
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"x":[' + objects
    sent = {
        "content-type": "application/json",
        "content-encoding": "gzip",
        "authorization": f"Bearer {key}",
    }
    r = httpx.post(gw.url + "/chat/completions", content=gzip.compress(body + b"]}"), headers=sent)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_json" and "100000 JSON objects and arrays" in err["message"]


def test_brackets_inside_strings_are_not_objects(gw: GatewayServer) -> None:
    # a prompt of code holds many brackets; only real objects and arrays count, and nest
    _, key = gw.new_tenant()
    code = "f(x) { return [[[[{a: [1]}]]]]; } " * 40_000  # 240,000 brackets in a string
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": code}],
        "max_tokens": 4,
    }
    r = httpx.post(
        gw.url + "/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}", "Cache-Control": "no-store"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]
