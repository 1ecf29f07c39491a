"""A client that asks for a large non-stream answer and never reads it (hunt11 h112).

uvicorn writes the whole answer into the connection's buffer at once and, at keep-alive's end,
closes by waiting for that buffer to drain: the client held the answer in the gateway's memory,
and the connection, for as long as it liked (10 such clients of a 15 MB answer: +430 MB RSS).
Once the answer is out of the app's hands, a client that takes none of it for
THRIFTGATE_CLIENT_STALL_TIMEOUT_S has its connection aborted, as a stalled stream is cut.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import GatewayServer, MockUpstreamServer, mock_deployment, wait_for

pytestmark = pytest.mark.integration

STALL_S = 2
WORDS = 2_000_000  # a 10 MB answer: more than the kernel's socket buffers hold


@pytest.fixture(scope="module")
def rig(session_tmp: Path, pg_url: str) -> Iterator[tuple[GatewayServer, str]]:
    tmp = session_tmp / "unread-answer"
    tmp.mkdir(exist_ok=True)
    mock = MockUpstreamServer(tmp, reply=" ".join(["w"] * WORDS))
    gw: GatewayServer | None = None
    try:
        gw = GatewayServer(
            tmp,
            pg_url,
            [mock_deployment("big-answers", "big-m", mock)],
            extra_env={"THRIFTGATE_CLIENT_STALL_TIMEOUT_S": str(STALL_S)},
        )
        _, key = gw.new_tenant()
        yield gw, key
    finally:
        if gw is not None:
            gw.stop()
        mock.stop()


def test_a_client_that_never_reads_a_large_answer_is_cut(rig: tuple[GatewayServer, str]) -> None:
    gw, key = rig
    body = json.dumps(
        {"model": "big-m", "messages": [{"role": "user", "content": uuid.uuid4().hex}]}
    ).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.connect(("127.0.0.1", gw.port))
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
            + f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        cut = wait_for(lambda: "took none of" in gw.log(), timeout_s=30)
        assert cut, "the unread answer's connection was never aborted"
        # what the kernel's buffers held, then the end: not the whole answer
        sock.settimeout(20)
        data = bytearray()
        with contextlib.suppress(ConnectionResetError):
            while piece := sock.recv(1 << 20):
                data += piece
        head, _, answer = bytes(data).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        assert length is not None, head
        assert len(answer) < int(length[1]), "the whole answer was kept for the client"
    finally:
        sock.close()
