"""A request refused before its body was read, closing the connection (hunt12 h126).

A body declared past THRIFTGATE_MAX_BODY_BYTES gets its 413 at once, with `connection:
close`, before a byte of it is read. Closing a socket with unread bytes in it makes the kernel
answer with a reset: a client still sending its body (Node's fetch/undici, under the official
Node SDK, writes it whole before it reads) got ECONNRESET instead of the 413, 7 times out of 10
with a 6 MB body; the SDK called it "Connection error.", retried it twice (uploading it each
time) and gave up with no OpenAI error at all. Now the gateway closes as RFC 9112 (9.6) asks:
its side first, after the answer, then it drops what the client still sends until the client
closes, for at most THRIFTGATE_REQUEST_READ_TIMEOUT_S.
"""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import GatewayServer, MockUpstreamServer, mock_deployment

pytestmark = pytest.mark.integration

MODEL = "refused-upload-m"
LIMIT = 64 * 1024
BODY = 4 * 1024 * 1024  # past the kernel's socket buffers on both sides


@pytest.fixture(scope="module", params=[True, False], ids=["fast-lane", "fastapi"])
def gw(
    request: pytest.FixtureRequest,
    session_tmp: Path,
    pg_url: str,
    mock_upstream: MockUpstreamServer,
) -> Iterator[GatewayServer]:
    server = GatewayServer(
        session_tmp,
        pg_url,
        [mock_deployment("refused-upload-dep", MODEL, mock_upstream)],
        extra_env={
            "THRIFTGATE_FAST_LANE": str(request.param).lower(),
            "THRIFTGATE_MAX_BODY_BYTES": str(LIMIT),
            "THRIFTGATE_REQUEST_READ_TIMEOUT_S": "30",
        },
    )
    try:
        yield server
    finally:
        server.stop()


def head(gw: GatewayServer, length: int, key: str = "tg-not-checked-first") -> bytes:
    return (
        "POST /v1/chat/completions HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{gw.port}\r\n"
        f"Authorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while piece := sock.recv(65536):
        data += piece
    return data


def read_answer(sock: socket.socket) -> bytes:
    """One answer off the socket: its head, then its Content-Length of body."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, f"closed without an answer: {data!r}"
        data += piece
    length = int(data.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
    while len(data.partition(b"\r\n\r\n")[2]) < length:
        piece = sock.recv(65536)
        assert piece, f"closed in the answer: {data!r}"
        data += piece
    return data


def assert_413(answer: bytes) -> None:
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 413"), answer[:200]
    error = json.loads(rest.partition(b"\r\n\r\n")[2])["error"]
    assert error["code"] == "request_too_large"
    assert error["type"] == "invalid_request_error"


def test_a_client_that_sends_its_whole_body_then_reads_gets_the_413(gw: GatewayServer) -> None:
    """What undici does: the whole request written, then the answer read."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
        sock.sendall(head(gw, BODY) + b" " * BODY)  # ConnectionResetError before the fix
        sock.shutdown(socket.SHUT_WR)
        assert_413(read_to_eof(sock))


def test_the_rest_of_a_refused_body_sent_after_the_413_is_dropped_not_reset(
    gw: GatewayServer,
) -> None:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
        sock.sendall(head(gw, BODY))
        assert_413(read_answer(sock))
        sock.sendall(b" " * BODY)  # BrokenPipe / ConnectionResetError before the fix
        sock.shutdown(socket.SHUT_WR)
        assert read_to_eof(sock) == b"", "nothing after the 413: the connection ends"


def test_a_connection_dropping_a_refused_body_does_not_hold_up_shutdown(
    session_tmp: Path, pg_url: str, mock_upstream: MockUpstreamServer
) -> None:
    """uvicorn's shutdown waits for every connection to close: one left dropping a client's
    refused body (for up to the read timeout) would hold SIGTERM for its graceful window."""
    server = GatewayServer(
        session_tmp,
        pg_url,
        [mock_deployment("refused-upload-dep", MODEL, mock_upstream)],
        extra_env={
            "THRIFTGATE_MAX_BODY_BYTES": str(LIMIT),
            "THRIFTGATE_REQUEST_READ_TIMEOUT_S": "600",
        },
    )
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(head(server, BODY))
            assert_413(read_answer(sock))
            sock.sendall(b" " * 1000)  # and then the client neither sends nor closes
            server.proc.send_signal(signal.SIGTERM)
            server.proc.wait(60)
            assert read_to_eof(sock) == b""
        assert "timeout graceful shutdown exceeded" not in server.log()
    finally:
        server.stop()
