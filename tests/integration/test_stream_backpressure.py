"""Streams and the peers at both ends: a client that stops early, a client that reads slowly,
an upstream that trickles.

A client that closed a long stream from a fast upstream after ten chunks had its stream read
from the upstream to the end and billed in full as a 200: Starlette's disconnect listener
cancels through anyio, which never lands while the next chunk is always ready (see
`gateway/api/disconnect.py`). Now the row is a 499, billed for what was sent.
"""

from __future__ import annotations

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


@pytest.fixture(scope="module", params=["fast-lane", "fastapi-routes"])
def rig(
    request: pytest.FixtureRequest, session_tmp: Path
) -> Iterator[tuple[GatewayServer, MockUpstreamServer, str]]:
    tmp = session_tmp / f"backpressure-{request.param}"
    tmp.mkdir(exist_ok=True)
    db = create_database("tg_backpressure")
    mock = MockUpstreamServer(tmp, reply=" ".join(["w"] * WORDS))
    env = {"THRIFTGATE_FAST_LANE": "false"} if request.param == "fastapi-routes" else {}
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
