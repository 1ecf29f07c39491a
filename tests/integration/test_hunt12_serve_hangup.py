"""SIGHUP (`kill -HUP`, as one reloads nginx; or the terminal `serve` runs in closing) killed
a one-worker gateway on the spot: the streams in flight were cut mid-answer and never billed
(no ledger row), though the upstream billed them. It now stops as on SIGTERM: what is in
flight finishes and is billed, then the process exits."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    mock_deployment,
    sdk_client,
    sql,
)

pytestmark = pytest.mark.integration


def test_sighup_lets_a_stream_in_flight_finish_and_be_billed(
    tmp_path: Path, fresh_pg_url: str
) -> None:
    mock = MockUpstreamServer(tmp_path, ms_per_token=100, reply=" ".join(["word"] * 20))
    gw = GatewayServer(tmp_path, fresh_pg_url, [mock_deployment("m", "gpt-4o-mini", mock)])
    try:
        tid, key = gw.new_tenant()
        stream = sdk_client(gw, key).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        chunks = iter(stream)
        next(chunks)  # the answer is under way
        gw.proc.send_signal(signal.SIGHUP)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert len(text.split()) >= 19  # the rest of the 20 words, not a cut stream
        assert gw.proc.wait(60) in (0, -signal.SIGTERM)  # as after SIGTERM (uvicorn re-raises it)
        rows = sql(
            fresh_pg_url, "SELECT completion_tokens FROM usage_ledger WHERE tenant_id = $1", tid
        )
        assert [r["completion_tokens"] for r in rows] == [20]
    finally:
        gw.stop()
        mock.stop()
