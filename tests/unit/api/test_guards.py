"""SizeGuard: header and body limits enforced before any handler, in OpenAI's error shape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from gateway.api.errors import install_error_handlers
from gateway.api.guards import SizeGuard

LIMIT_BODY = 1024
LIMIT_HEADERS = 2048


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(SizeGuard, max_header_bytes=LIMIT_HEADERS, max_body_bytes=LIMIT_BODY)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    with TestClient(app) as c:
        yield c


def error(r: object) -> dict[str, object]:
    body = r.json()  # type: ignore[attr-defined]
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


def test_small_requests_pass(client: TestClient) -> None:
    r = client.post("/echo", content=b"x" * LIMIT_BODY)
    assert r.status_code == 200 and r.json() == {"bytes": LIMIT_BODY}


def test_declared_body_over_the_limit_is_413_before_reading(client: TestClient) -> None:
    r = client.post("/echo", content=b"x" * (LIMIT_BODY + 1))
    assert r.status_code == 413
    assert error(r)["code"] == "request_too_large"


def test_streamed_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(4):
            yield b"x" * (LIMIT_BODY // 2)

    r = client.post("/echo", content=chunks())  # chunked: no Content-Length
    assert r.status_code == 413
    assert error(r)["code"] == "request_too_large"


def test_headers_over_the_limit_are_431(client: TestClient) -> None:
    r = client.post("/echo", content=b"{}", headers={"x-big": "a" * LIMIT_HEADERS})
    assert r.status_code == 431
    assert error(r)["code"] == "headers_too_large"


def test_bad_content_length_is_400(client: TestClient) -> None:
    r = client.post("/echo", content=b"{}", headers={"content-length": "abc"})
    assert r.status_code in (400, 413)  # some clients refuse to send it at all
