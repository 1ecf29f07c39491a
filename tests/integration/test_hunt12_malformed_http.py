"""A request the HTTP parser refuses (hunt12 h126): uvicorn answered `text/plain` "Invalid HTTP
request received.", where every other refusal is OpenAI's error shape, so an SDK showed no
message, type or code (a Content-Length beside Transfer-Encoding: chunked, two different
Content-Lengths, a negative one: request-smuggling shapes a proxy in front may produce).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import GatewayServer, MockUpstreamServer, mock_deployment

pytestmark = pytest.mark.integration

BODY = b'{"model": "malformed-http-m", "messages": [{"role": "user", "content": "hi"}]}'


@pytest.fixture(scope="module")
def gw(
    session_tmp: Path, pg_url: str, mock_upstream: MockUpstreamServer
) -> Iterator[GatewayServer]:
    server = GatewayServer(
        session_tmp,
        pg_url,
        [mock_deployment("malformed-http-dep", "malformed-http-m", mock_upstream)],
    )
    try:
        yield server
    finally:
        server.stop()


def answer(gw: GatewayServer, framing: bytes, body: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tg-x\r\n"
            b"Content-Type: application/json\r\n" + framing + b"\r\n" + body
        )
        data = b""
        while piece := sock.recv(65536):
            data += piece
        return data


CHUNKED = b"%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    ("framing", "body"),
    [
        (b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", CHUNKED),
        (b"Content-Length: %d\r\nContent-Length: 3\r\n" % len(BODY), BODY),
        (b"Content-Length: -1\r\n", BODY),
    ],
    ids=["length-and-chunked", "two-lengths", "negative-length"],
)
def test_a_request_the_parser_refuses_is_a_400_in_openai_shape(
    gw: GatewayServer, framing: bytes, body: bytes
) -> None:
    data = answer(gw, framing, body)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), data[:300]
    assert b"content-type: application/json" in head.lower()
    error = json.loads(rest)["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_http_request"
    assert "not valid HTTP/1.1" in error["message"]
