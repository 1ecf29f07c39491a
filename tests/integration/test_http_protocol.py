"""HTTP-level details a client or proxy relies on, on both paths a request can take: the fast
lane and the FastAPI routes (THRIFTGATE_FAST_LANE=false). Compressed request bodies."""

from __future__ import annotations

import gzip
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.servers import ADMIN_KEY, GatewayServer, MockUpstreamServer, mock_deployment

pytestmark = pytest.mark.integration

MAX_BODY = 100_000
MODEL = "proto-m"


class Rig:
    def __init__(self, gw: GatewayServer, key: str) -> None:
        self.gw, self.key = gw, key

    def post(self, body: bytes, encoding: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        if encoding is not None:
            headers["Content-Encoding"] = encoding
        return httpx.post(self.gw.url + "/chat/completions", content=body, headers=headers)


def chat(text: str = "compressed hello") -> bytes:
    # a fresh prompt each time, so the response cache never answers
    content = f"{text} {uuid.uuid4().hex}"
    return orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": content}]})


@pytest.fixture(scope="module", params=[True, False], ids=["fast-lane", "fastapi"])
def rig(
    request: pytest.FixtureRequest,
    session_tmp: Path,
    pg_url: str,
    mock_upstream: MockUpstreamServer,
) -> Iterator[Rig]:
    gw = GatewayServer(
        session_tmp,
        pg_url,
        [mock_deployment("proto-dep", MODEL, mock_upstream)],
        extra_env={
            "THRIFTGATE_FAST_LANE": str(request.param).lower(),
            "THRIFTGATE_MAX_BODY_BYTES": str(MAX_BODY),
        },
    )
    try:
        _, key = gw.new_tenant()
        yield Rig(gw, key)
    finally:
        gw.stop()


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b, wbits=-zlib.MAX_WBITS)),  # raw, as some send it
        ("identity", lambda b: b),
        ("gzip, gzip", lambda b: gzip.compress(gzip.compress(b))),
    ],
)
def test_a_compressed_body_is_decompressed(rig: Rig, encoding: str, compress: Any) -> None:
    r = rig.post(compress(chat()), encoding)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"].startswith("Echo: compressed hello")


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, snappy"])
def test_an_unsupported_encoding_is_415_naming_it(rig: Rig, encoding: str) -> None:
    r = rig.post(chat(), encoding)
    assert r.status_code == 415, r.text
    err = r.json()["error"]
    assert err["code"] == "unsupported_media_type"
    assert "Content-Encoding" in err["message"]


def test_a_zip_bomb_is_413(rig: Rig) -> None:
    # ~100 KB of gzip inflating to 100 MB: refused at the limit, long before memory runs out
    bomb = gzip.compress(b"[" + b" " * 100_000_000 + b"]", compresslevel=9)
    assert len(bomb) < MAX_BODY
    r = rig.post(bomb, "gzip")
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "request_too_large"


def test_a_decompressed_body_just_at_the_limit_is_served(rig: Rig) -> None:
    body = chat()
    body = body[:-1] + b" " * (MAX_BODY - len(body)) + b"}"
    assert len(body) == MAX_BODY
    assert rig.post(gzip.compress(body), "gzip").status_code == 200
    r = rig.post(gzip.compress(body[:-1] + b" }"), "gzip")
    assert r.status_code == 413, r.text


def test_a_corrupt_gzip_body_is_400_naming_the_encoding(rig: Rig) -> None:
    r = rig.post(gzip.compress(chat())[:-12], "gzip")
    assert r.status_code == 400, r.text
    assert "gzip" in r.json()["error"]["message"]


def post_typed(rig: Rig, body: bytes, content_type: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {rig.key}", "Content-Type": content_type}
    return httpx.post(rig.gw.url + "/chat/completions", content=body, headers=headers)


def chat_text(text: str) -> str:
    # a fresh prompt each time (the cache never answers); the mock echoes it back
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"{text} {uuid.uuid4().hex}"}]}
    return orjson.dumps(body).decode()


@pytest.mark.parametrize(
    ("encoding", "content_type"),
    [
        ("utf-8-sig", "application/json"),  # a byte order mark, as PowerShell writes UTF-8
        ("utf-16", "application/json; charset=utf-16"),
        ("utf-16-le", "application/json; charset=UTF-16LE"),
        ("latin-1", "application/json; charset=ISO-8859-1"),  # old Java / .NET defaults
        ("cp1252", 'text/plain; charset="windows-1252"'),
        ("utf-8", "application/json; charset=ISO-8859-1"),  # mislabelled: still read as UTF-8
        ("utf-8", "application/json; charset=utf8mb4"),  # an unknown label on a UTF-8 body
    ],
)
def test_a_body_is_read_in_the_charset_it_names(rig: Rig, encoding: str, content_type: str) -> None:
    r = post_typed(rig, chat_text("café crème").encode(encoding), content_type)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"].startswith("Echo: café crème")


def test_a_body_that_is_not_utf8_and_names_no_charset_is_a_400_saying_so(rig: Rig) -> None:
    r = post_typed(rig, chat_text("café").encode("latin-1"), "application/json")
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_json" and "not UTF-8" in err["message"], err
    unknown = post_typed(rig, chat_text("café").encode("latin-1"), "application/json; charset=x-k")
    assert unknown.status_code == 415, unknown.text
    assert "'x-k'" in unknown.json()["error"]["message"]
    wrong = post_typed(rig, b"\xff\xfe\x00", "application/json; charset=utf-16-be")
    assert wrong.status_code == 400, wrong.text
    assert "utf-16-be" in wrong.json()["error"]["message"]


def send(rig: Rig, method: str, path: str, headers: list[tuple[str, str]]) -> httpx.Response:
    body = chat() if method == "POST" else None
    return httpx.request(method, rig.gw.url + path, content=body, headers=headers, timeout=30)


ROUTES = [("POST", "/chat/completions"), ("GET", "/models"), ("GET", f"/models/{MODEL}")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("good_first", [True, False])
def test_two_different_authorization_headers_are_401_on_every_route(
    rig: Rig, method: str, path: str, good_first: bool
) -> None:
    good, bad = f"Bearer {rig.key}", "Bearer sk-not-a-key"
    pair = [good, bad] if good_first else [bad, good]
    r = send(rig, method, path, [("Authorization", v) for v in pair])
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "invalid_api_key"
    # the same credential twice (a proxy repeating it) is no ambiguity
    assert send(rig, method, path, [("Authorization", good)] * 2).status_code == 200


@pytest.mark.parametrize("path", ["/models", f"/models/{MODEL}", "/models/no-such-model"])
def test_models_routes_echo_the_request_id(rig: Rig, path: str) -> None:
    ok = send(rig, "GET", path, [("Authorization", f"Bearer {rig.key}"), ("x-request-id", "m-1")])
    assert ok.headers["x-request-id"] == "m-1"
    refused = send(rig, "GET", path, [("Authorization", "Bearer nope"), ("x-request-id", "m-2")])
    assert (refused.status_code, refused.headers["x-request-id"]) == (401, "m-2")


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/v1/models", f"/v1/models/{MODEL}"])
def test_head_is_answered_like_get_without_a_body(rig: Rig, path: str) -> None:
    auth = {"Authorization": f"Bearer {rig.key}"}
    get = httpx.get(rig.gw.base + path, headers=auth, timeout=30)
    head = httpx.head(rig.gw.base + path, headers=auth, timeout=30)
    assert (head.status_code, head.content) == (get.status_code, b"")
    assert head.headers["content-type"] == get.headers["content-type"]


def test_api_paths_with_a_trailing_slash_are_served(rig: Rig) -> None:
    # Starlette answered POST .../completions/ with a bare 307 to an absolute http:// URL (wrong
    # behind a TLS proxy, and not OpenAI's error shape) and GET /v1/models/ with a 404.
    headers = {"Authorization": f"Bearer {rig.key}", "Content-Type": "application/json"}
    r = httpx.post(rig.gw.url + "/chat/completions/", content=chat(), headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]
    models = httpx.get(rig.gw.url + "/models/", headers=headers)
    assert models.status_code == 200, models.text
    assert MODEL in {m["id"] for m in models.json()["data"]}
    missing = httpx.post(rig.gw.url + "/no-such-route/", content=chat(), headers=headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "path", ["/v1//chat/completions", "//v1/chat/completions", "/v1/chat//completions/"]
)
def test_api_paths_with_doubled_slashes_are_served(rig: Rig, path: str) -> None:
    # a base URL ending in "/" joined to "/chat/completions" by a client that does not trim it
    headers = {"Authorization": f"Bearer {rig.key}", "Content-Type": "application/json"}
    r = httpx.post(rig.gw.base + path, content=chat(), headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"].startswith("Echo: compressed hello")


BROWSER = {"Origin": "http://localhost:3000"}


def test_a_browser_preflight_on_the_api_is_answered(rig: Rig) -> None:
    """A web app calling the API from a page (as OpenAI's JS SDK with dangerouslyAllowBrowser
    does) is stopped by the browser unless its preflight is answered: it was a 405."""
    asked = "authorization, content-type, x-stainless-os"
    r = httpx.options(
        rig.gw.url + "/chat/completions",
        headers={
            **BROWSER,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": asked,
        },
    )
    assert r.status_code == 204, r.text
    assert r.headers["access-control-allow-origin"] == "*"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert r.headers["access-control-allow-headers"] == asked
    # then the request itself, answered or refused, is readable by the page, headers too
    auth = {**BROWSER, "Authorization": f"Bearer {rig.key}", "Content-Type": "application/json"}
    ok = httpx.post(rig.gw.url + "/chat/completions", content=chat(), headers=auth)
    assert ok.status_code == 200, ok.text
    assert ok.headers["access-control-allow-origin"] == "*"
    assert ok.headers["access-control-expose-headers"] == "*"
    refused = httpx.post(
        rig.gw.url + "/chat/completions", content=chat(), headers={**auth, "Authorization": "x"}
    )
    assert (refused.status_code, refused.headers["access-control-allow-origin"]) == (401, "*")
    models = httpx.get(rig.gw.url + "/models", headers=auth)
    assert models.headers["access-control-allow-origin"] == "*"


def test_the_admin_api_and_dashboard_get_no_cors(rig: Rig) -> None:
    preflight = {**BROWSER, "Access-Control-Request-Method": "POST"}
    for path in ("/admin/tenants", "/dashboard/login"):
        r = httpx.options(rig.gw.base + path, headers=preflight)
        assert r.status_code != 204
        assert "access-control-allow-origin" not in r.headers
        r = httpx.get(
            rig.gw.base + path, headers={**BROWSER, "Authorization": f"Bearer {ADMIN_KEY}"}
        )
        assert "access-control-allow-origin" not in r.headers


def test_admin_paths_with_a_trailing_slash_are_served(rig: Rig) -> None:
    # like /v1/: a bare 307 to an absolute http:// URL pointed behind a TLS proxy at port 80
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    r = httpx.get(rig.gw.base + "/admin/tenants/", headers=admin, follow_redirects=False)
    assert r.status_code == 200, (r.status_code, r.headers.get("location"))
    assert isinstance(r.json(), list | dict)
    refused = httpx.get(rig.gw.base + "/admin/tenants/", follow_redirects=False)
    assert refused.status_code == 401


def test_a_bad_key_is_refused_before_the_body_is_asked_for(rig: Rig) -> None:
    """`Expect: 100-continue` with a bad key: the 401 comes without a `100 Continue`, so the
    client never uploads its (here 90 KB) body. The fast lane read the body first (hunt9 h5)."""
    import socket

    host, port = "127.0.0.1", rig.gw.port
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Authorization: Bearer tg-not-a-real-key\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 90000\r\n"
        "Expect: 100-continue\r\n\r\n"
    )
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = sock.recv(65536).decode("latin-1")
    assert answer.startswith("HTTP/1.1 401"), answer[:200]
    assert "100 Continue" not in answer
