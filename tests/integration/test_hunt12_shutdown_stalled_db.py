"""`serve` stops on SIGTERM while Postgres does not answer, and loses no ledger row doing so.

With the database stalled (a partition, a failover in progress: here a proxy that stops
forwarding), SIGTERM left the gateway running until the database answered again (90 s and
counting here): its shutdown wrote the pending cache entries and Responses items, the router's
statistics and the ledger one after the other, each waiting out asyncpg's 60 s connect timeout
or for ever on a stalled connection, and a second Ctrl-C does not interrupt an application's
shutdown. An orchestrator kills such a process; an operator had to. The shutdown's database
work is bounded now; the ledger rows stay in the spool for the next start.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    ledger_row,
    mock_deployment,
    sdk_client,
)
from tests.support.tcp_proxy import StallingProxy

pytestmark = pytest.mark.integration


def test_sigterm_with_the_database_stalled_stops_and_keeps_the_rows(
    session_tmp: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer
) -> None:
    proxy = StallingProxy(fresh_pg_url)
    env = {"THRIFTGATE_KEY_CACHE_TTL_S": "600"}  # the key stays cached through the stall
    deps = [mock_deployment("m", "m", mock_upstream)]
    spool = session_tmp / "stalled-shutdown-spool"
    gw = GatewayServer(session_tmp, proxy.url, deps, extra_env=env, spool_dir=spool)
    again: GatewayServer | None = None
    try:
        _, key = gw.new_tenant()
        client = sdk_client(gw, key)
        client.models.list()  # the key is cached
        proxy.stall()
        # writes the shutdown finds pending: a cache entry, a stored response, two ledger rows
        chat = client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
        answer = client.responses.with_raw_response.create(model="m", input="hello")
        request_ids = [chat.headers["x-request-id"], answer.headers["x-request-id"]]
        gw.proc.send_signal(signal.SIGTERM)
        gw.proc.wait(60)  # raised TimeoutExpired: it waited for the database
        proxy.resume()
        # the same URL: a spool replays only into the database it was written for
        again = GatewayServer(session_tmp, proxy.url, deps, spool_dir=spool)
        for request_id in request_ids:  # replayed from the spool, once
            assert ledger_row(again, request_id)["status_code"] == 200
    finally:
        proxy.resume()
        gw.stop()
        if again is not None:
            again.stop()
        proxy.close()
