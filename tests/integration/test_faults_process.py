"""Process faults: SIGKILL the gateway under load, restart it on the same spool directory.

Every response a client fully received (a JSON body, or a stream through `[DONE]`) must have
exactly one ledger row after the restart; nothing is duplicated. Requests cut off by the kill
may or may not have a row (their client never saw an answer), but never two.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    mock_deployment,
    sql,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

THREADS = 6


def test_sigkill_under_load_loses_no_received_response(
    session_tmp: Path, fresh_pg_url: str
) -> None:
    tmp = session_tmp / "faults-process"
    tmp.mkdir(exist_ok=True)
    mock = MockUpstreamServer(tmp, ms_per_token=2, reply="one two three four five six seven")
    spool = tmp / "spool"
    deps = [mock_deployment("mock-mini", "gpt-4o-mini", mock)]
    # A long flush interval keeps most rows in the spool when the kill lands.
    env = {"THRIFTGATE_LEDGER_FLUSH_INTERVAL_S": "2"}
    gw = GatewayServer(tmp, fresh_pg_url, deps, spool_dir=spool, extra_env=env)
    _, key = gw.new_tenant(budget_usd="1000")
    received: list[str] = []
    attempted: list[str] = []
    stop = threading.Event()

    def worker(i: int) -> None:
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            n = 0
            while not stop.is_set():
                n += 1
                rid = f"kill-{i}-{n}-{uuid.uuid4().hex[:8]}"
                attempted.append(rid)
                body = {
                    "model": "gpt-4o-mini",
                    "stream": n % 2 == 0,
                    "messages": [{"role": "user", "content": f"hello {rid}"}],
                }
                headers = {
                    "Authorization": f"Bearer {key}",
                    "x-request-id": rid,
                    "Cache-Control": "no-store",
                }
                try:
                    if not body["stream"]:
                        r = client.post("/chat/completions", json=body, headers=headers)
                        if r.status_code == 200 and r.json()["choices"]:
                            received.append(rid)
                        continue
                    with client.stream(
                        "POST", "/chat/completions", json=body, headers=headers
                    ) as r:
                        text = b"".join(r.iter_bytes())
                        if r.status_code == 200 and text.rstrip().endswith(b"data: [DONE]"):
                            received.append(rid)
                except httpx.HTTPError:
                    return  # the gateway is gone

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    time.sleep(3.0)
    gw.kill()  # SIGKILL: no shutdown hook, no final flush
    stop.set()
    for t in threads:
        t.join(30)
    gw.stop()
    assert len(received) > 50, "too little load to prove anything"
    in_db_before = sql(fresh_pg_url, "SELECT count(*) AS n FROM usage_ledger")[0]["n"]
    assert in_db_before < len(received), "nothing was left in the spool: the test proves nothing"

    # Restart on the same spool directory: the orphaned segments are adopted and replayed.
    gw2 = GatewayServer(
        tmp,
        fresh_pg_url,
        deps,
        spool_dir=spool,
        extra_env={"THRIFTGATE_LEDGER_FLUSH_INTERVAL_S": "0.05"},
    )
    try:

        def rows() -> list[str]:
            got = [
                r["request_id"]
                for r in sql(
                    fresh_pg_url,
                    "SELECT request_id FROM usage_ledger WHERE request_id LIKE 'kill-%'",
                )
            ]
            return got if set(received) <= set(got) else []

        ids = wait_for(rows, 30, 0.2) or [
            r["request_id"]
            for r in sql(
                fresh_pg_url, "SELECT request_id FROM usage_ledger WHERE request_id LIKE 'kill-%'"
            )
        ]
        missing = set(received) - set(ids)
        assert not missing, f"{len(missing)} of {len(received)} received responses have no row"
        assert len(ids) == len(set(ids)), "duplicated ledger rows"
        assert set(ids) <= set(attempted)
        print(
            f"{len(received)} responses received before SIGKILL, {in_db_before} rows in the DB "
            f"at the kill, {len(ids)} after restart; none lost, none duplicated"
        )
        assert (
            not list(spool.glob("*.jsonl"))
            or all(p.stat().st_size == 0 for p in spool.glob("*.jsonl"))
            or wait_for(lambda: not [p for p in spool.glob("*.jsonl") if p.stat().st_size], 5)
        )
    finally:
        gw2.stop()
        mock.stop()
