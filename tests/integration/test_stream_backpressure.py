"""Streams and a client that does not read them to the end (see `gateway/api/disconnect.py`).

A client that closed a long stream from a fast upstream after ten chunks had its stream read
from the upstream to the end and billed in full as a 200: Starlette's disconnect listener
cancels through anyio, which never lands while the next chunk is always ready. Now the row is a
499, billed for what was sent. A client that stopped reading and kept its connection open held
the stream, the upstream's connection and the budget reservation for ever; it is cut once a
write to it has waited `THRIFTGATE_CLIENT_STALL_TIMEOUT_S`.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    create_database,
    drop_database,
    ledger_row,
    mock_deployment,
)

pytestmark = pytest.mark.integration

WORDS = 100_000  # the upstream's answer, streamed as fast as the gateway reads it
STALL_S = 2


@pytest.fixture(scope="module", params=["fast-lane", "fastapi-routes"])
def rig(
    request: pytest.FixtureRequest, session_tmp: Path
) -> Iterator[tuple[GatewayServer, MockUpstreamServer, str]]:
    tmp = session_tmp / f"backpressure-{request.param}"
    tmp.mkdir(exist_ok=True)
    db = create_database("tg_backpressure")
    mock = MockUpstreamServer(tmp, reply=" ".join(["w"] * WORDS))
    env = {"THRIFTGATE_CLIENT_STALL_TIMEOUT_S": str(STALL_S)}
    if request.param == "fastapi-routes":
        env["THRIFTGATE_FAST_LANE"] = "false"
    gw: GatewayServer | None = None
    try:
        gw = GatewayServer(
            tmp, db, [mock_deployment("fast", "gpt-4o-mini", mock, default=True)], extra_env=env
        )
        _, key = gw.new_tenant(budget_usd=50)
        yield gw, mock, key
    finally:
        if gw is not None:
            gw.stop()
        mock.stop()
        drop_database(db)


def _client(gw: GatewayServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url, api_key=key, max_retries=0, timeout=60)


@pytest.mark.parametrize("api", ["chat", "completions", "responses"])
def test_a_stream_closed_early_stops_the_upstream_and_is_a_499(
    rig: tuple[GatewayServer, MockUpstreamServer, str], api: str
) -> None:
    gw, _, key = rig
    rid = f"early-{api}-" + uuid.uuid4().hex
    prompt = f"a long answer please {uuid.uuid4().hex}"  # never a cache hit
    headers = {"x-request-id": rid}
    client = _client(gw, key)
    stream: Any
    if api == "chat":
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            extra_headers=headers,
        )
    elif api == "completions":
        stream = client.completions.create(
            model="gpt-4o-mini", prompt=prompt, stream=True, extra_headers=headers
        )
    else:
        stream = client.responses.create(
            model="gpt-4o-mini", input=prompt, stream=True, extra_headers=headers
        )
    for i, _ in enumerate(stream):
        if i == 10:
            break
    stream.close()
    row = ledger_row(gw, rid)
    assert row["status_code"] == 499, row
    assert row["error_code"] == "client_disconnected"
    # billed for what left the gateway (the client's socket buffers hold some), not the whole
    assert 0 < row["completion_tokens"] < WORDS, row["completion_tokens"]


def test_a_client_that_stops_reading_is_cut_after_the_stall_timeout(
    rig: tuple[GatewayServer, MockUpstreamServer, str],
) -> None:
    gw, _, key = rig
    rid = "stalled-" + uuid.uuid4().hex
    body = json.dumps(
        {
            "model": "gpt-4o-mini",
            "stream": True,
            "messages": [{"role": "user", "content": f"a long answer {uuid.uuid4().hex}"}],
        }
    ).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # full after a few chunks
    try:
        sock.connect(("127.0.0.1", gw.port))
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
            + f"Authorization: Bearer {key}\r\nx-request-id: {rid}\r\n".encode()
            + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        # settled while the client still holds its connection, reading nothing
        row = ledger_row(gw, rid)
        assert row["status_code"] == 499, row
        assert row["error_code"] == "client_disconnected"
        assert STALL_S * 1000 <= row["latency_ms"] < (STALL_S + 5) * 1000, row["latency_ms"]
        assert 0 < row["completion_tokens"] < WORDS
        # reading again: what was buffered, then a cut connection, not a stream that looks whole
        sock.settimeout(20)
        data = bytearray()
        while piece := sock.recv(1 << 20):
            data += piece
        assert data.startswith(b"HTTP/1.1 200")
        assert b"data: [DONE]" not in data
        assert not data.endswith(b"0\r\n\r\n")  # the chunked body's end never came
    finally:
        sock.close()
