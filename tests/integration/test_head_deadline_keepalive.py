"""A kept-alive connection's next request after one answered before its body was read (a 401):
its head has the whole THRIFTGATE_REQUEST_READ_TIMEOUT_S from its own first byte, as every
request's does (api/connections.py), not what was left of the idle deadline armed when the
refused body ended (code review of round 10, h119)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_hunt11_slow_clients import Rig, answer_of
from tests.support.servers import GatewayServer, MockUpstreamServer, mock_deployment

pytestmark = pytest.mark.integration

READ_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def rig(session_tmp: Path, pg_url: str, mock_upstream: MockUpstreamServer) -> Iterator[Rig]:
    gw = GatewayServer(
        session_tmp,
        pg_url,
        [mock_deployment("head-deadline-dep", "head-deadline-m", mock_upstream)],
        extra_env={"THRIFTGATE_REQUEST_READ_TIMEOUT_S": str(READ_TIMEOUT_S)},
    )
    try:
        _, key = gw.new_tenant()
        yield Rig(gw, key)
    finally:
        gw.stop()


def test_the_next_head_after_a_refused_body_has_its_own_deadline(rig: Rig) -> None:
    with socket.create_connection(("127.0.0.1", rig.gw.port), timeout=30) as sock:
        sock.sendall(rig.head(10, key="tg-not-a-real-key") + b"{")
        head, _ = answer_of(sock)
        assert head.startswith("HTTP/1.1 401"), head
        sock.sendall(b"        }")  # the rest of the refused body: the connection is idle
        time.sleep(READ_TIMEOUT_S * 0.75)  # idle, within the deadline
        # a next request whose head takes half the deadline (two packets)
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(READ_TIMEOUT_S * 0.5)
        sock.sendall(f"Host: 127.0.0.1:{rig.gw.port}\r\n\r\n".encode())
        head, body = answer_of(sock)
        # was a 408 "did not arrive whole within 2 s", 1 s into a head sent 1.5 s after idling
        assert head.startswith("HTTP/1.1 200"), (head, body)
