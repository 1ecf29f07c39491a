"""Requests the server stops under are answered and recorded as the server's doing.

When `serve` stops with requests still running (a second Ctrl-C at once; SIGTERM once its 30 s
graceful window is spent), uvicorn cancels them. A non-stream client still connected got
uvicorn's plain-text `Internal Server Error` (500, not OpenAI's error shape), with a traceback
per request in the log, and every such request, streams too, was recorded as 499
`client_disconnected`, which no client did. Now: a 503 `server_shutting_down` in OpenAI's
shape (the SDK retries it), and rows saying 503 `server_shutting_down`, billed for what was
sent (the prompt once it went upstream, a stream's chunks).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    ledger_row,
    mock_deployment,
    wait_for,
)

pytestmark = pytest.mark.integration

REPLY = " ".join(f"w{i}" for i in range(60))


def test_requests_a_forced_stop_cancels_get_a_503_and_rows_saying_so(
    session_tmp: Path, fresh_pg_url: str
) -> None:
    tmp = session_tmp / "forced-stop"
    tmp.mkdir(exist_ok=True)
    drip = MockUpstreamServer(tmp, ms_per_token=500, reply=REPLY)  # a 30 s stream
    slow = MockUpstreamServer(tmp, latency_ms=30_000)  # a 30 s wait for a whole answer
    deps = [mock_deployment("drip", "drip", drip), mock_deployment("slow", "slow", slow)]
    spool = tmp / "spool"
    gw = GatewayServer(tmp, fresh_pg_url, deps, spool_dir=spool)
    again: GatewayServer | None = None
    try:
        _, key = gw.new_tenant(budget_usd="5")
        headers = {"Authorization": f"Bearer {key}", "Cache-Control": "no-store"}
        ask = {"messages": [{"role": "user", "content": "hi"}]}
        answers: dict[str, Any] = {}
        streamed = threading.Event()

        def plain() -> None:
            r = httpx.post(
                gw.url + "/chat/completions",
                json={**ask, "model": "slow"},
                headers={**headers, "x-request-id": "forced-plain"},
                timeout=60,
            )
            answers["plain"] = r

        def stream() -> None:
            body = {**ask, "model": "drip", "stream": True}
            with httpx.stream(
                "POST",
                gw.url + "/chat/completions",
                json=body,
                headers={**headers, "x-request-id": "forced-stream"},
                timeout=60,
            ) as r:
                try:
                    for line in r.iter_lines():
                        if '"content":"w' in line:
                            streamed.set()
                except httpx.HTTPError as exc:
                    answers["stream"] = exc

        threads = [threading.Thread(target=plain), threading.Thread(target=stream)]
        for t in threads:
            t.start()
        assert streamed.wait(30), "the stream never started"
        assert wait_for(slow.received, 30), "the plain request never left"
        gw.proc.send_signal(signal.SIGINT)  # a terminal's Ctrl-C, twice
        # (two at once are one to Python's signal handling)
        assert wait_for(lambda: "CTRL+C to force quit" in gw.log(), 30)
        gw.proc.send_signal(signal.SIGINT)
        for t in threads:
            t.join(60)
        gw.proc.wait(60)

        plain_answer = answers["plain"]
        assert plain_answer.status_code == 503, plain_answer.text
        assert plain_answer.json()["error"]["code"] == "server_shutting_down"
        assert "stream" in answers  # cut: its headers had gone

        # whatever the stopped process did not write, its spool holds for the next start
        again = GatewayServer(tmp, fresh_pg_url, deps, spool_dir=spool)
        for request_id in ("forced-plain", "forced-stream"):
            row = ledger_row(again, request_id)
            assert (row["status_code"], row["error_code"]) == (503, "server_shutting_down")
            assert row["prompt_tokens"] > 0  # it went upstream
        assert ledger_row(again, "forced-stream")["completion_tokens"] > 0
    finally:
        gw.stop()
        if again is not None:
            again.stop()
        drip.stop()
        slow.stop()
