"""/metrics tells the truth about the whole gateway, not one worker or one spool segment.

- With `--workers 2` every scrape (whichever worker answers it) counts every request served;
  the private metrics directory exists while it runs and is gone after. One worker uses no
  directory at all (in-process metrics, as before).
- While the database refuses connections, `thriftgate_ledger_spooled_rows` counts the rows
  waiting in the spool (it read 0 with 9 rows waiting), and the log does not get a traceback
  every poll.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    mock_deployment,
    sdk_client,
    sql,
    wait_for,
)

pytestmark = pytest.mark.integration


def scrape(gw: GatewayServer) -> str:
    # a fresh connection each time, so the kernel may hand it to either worker
    with httpx.Client(timeout=10) as client:
        r = client.get(gw.base + "/metrics", headers={"Connection": "close"})
    r.raise_for_status()
    return r.text


def total(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def serve_requests(gw: GatewayServer, key: str, n: int) -> None:
    for i in range(n):
        with sdk_client(gw, key) as client:  # a new client: a new connection
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": f"worker count {i}"}],
                max_tokens=5,
            )


def metric_dirs(tmp: Path) -> list[Path]:
    return list(tmp.glob("thriftgate-metrics-*"))


def test_two_workers_every_scrape_counts_every_request(
    tmp_path: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer
) -> None:
    temp = tmp_path / "tmpdir"
    temp.mkdir()
    gw = GatewayServer(
        tmp_path,
        fresh_pg_url,
        [mock_deployment("mock-mini", "gpt-4o-mini", mock_upstream)],
        workers=2,
        extra_env={"TMPDIR": str(temp)},
    )
    try:
        _, key = gw.new_tenant()
        n = 12
        serve_requests(gw, key, n)
        assert wait_for(
            lambda: sql(fresh_pg_url, "SELECT count(*) FROM usage_ledger")[0][0] == n,
            timeout_s=15,
        )
        seen = [total(scrape(gw), "thriftgate_requests_total") for _ in range(10)]
        assert seen == [n] * 10
        text = scrape(gw)
        # the router's per-process figures say which worker they come from
        assert re.search(r'thriftgate_route_in_flight\{deployment="mock-mini",pid="\d+"\}', text)
        assert len(metric_dirs(temp)) == 1
    finally:
        gw.stop()
    assert metric_dirs(temp) == []  # the private directory goes with the gateway


def test_one_worker_uses_no_metrics_directory(
    tmp_path: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer
) -> None:
    temp = tmp_path / "tmpdir"
    temp.mkdir()
    gw = GatewayServer(
        tmp_path,
        fresh_pg_url,
        [mock_deployment("mock-mini", "gpt-4o-mini", mock_upstream)],
        extra_env={"TMPDIR": str(temp)},
    )
    try:
        _, key = gw.new_tenant()
        serve_requests(gw, key, 3)
        text = scrape(gw)
        assert total(text, "thriftgate_requests_total") == 3
        assert 'thriftgate_route_in_flight{deployment="mock-mini"}' in text
        assert metric_dirs(temp) == []
    finally:
        gw.stop()


def test_spooled_rows_gauge_counts_rows_waiting_for_the_database(
    tmp_path: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer
) -> None:
    gw = GatewayServer(
        tmp_path, fresh_pg_url, [mock_deployment("mock-mini", "gpt-4o-mini", mock_upstream)]
    )
    db = fresh_pg_url.rsplit("/", 1)[1]
    admin_url = fresh_pg_url.rsplit("/", 1)[0] + "/postgres"
    try:
        try:
            _, key = gw.new_tenant()
            serve_requests(gw, key, 1)  # the key is cached; the tenant known
            sql(admin_url, f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
            sql(
                admin_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                db,
            )
            n = 6
            serve_requests(gw, key, n)
            # the writer rotates the open segment every flush: the rows sit in closed segments
            time.sleep(3)
            gauge = total(scrape(gw), "thriftgate_ledger_spooled_rows")
            spooled = sum(p.read_bytes().count(b"\n") for p in gw.spool_dir.glob("*.jsonl"))
            assert spooled >= n
            assert gauge == spooled
        finally:
            sql(admin_url, f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
        assert wait_for(
            lambda: total(scrape(gw), "thriftgate_ledger_spooled_rows") == 0, timeout_s=20
        )
        assert sql(fresh_pg_url, "SELECT count(*) FROM usage_ledger")[0][0] == n + 1
    finally:
        gw.stop()
