"""A database outage does not flood the log.

The cache follower polls every second and logged a full traceback each time (2,485 lines,
51 tracebacks in 8 s); every cache write during the outage added another. Now each failing
activity logs its first failure with the traceback, then at most a line a minute, and one line
when the database is back.
"""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path

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


def logged_tracebacks(log: str) -> int:
    """Log records that carry a traceback (a chained one prints several `Traceback` lines)."""
    lines = log.splitlines()
    return sum(
        1
        for line, after in itertools.pairwise(lines)
        if after.startswith("Traceback") and re.match(r"\d{4}-\d\d-\d\d ", line)
    )


def ask(gw: GatewayServer, key: str, text: str) -> None:
    with sdk_client(gw, key) as client:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}], max_tokens=5
        )


def test_database_outage_logs_each_failure_once_then_recovery(
    tmp_path: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer
) -> None:
    gw = GatewayServer(
        tmp_path,
        fresh_pg_url,
        [mock_deployment("mock-mini", "gpt-4o-mini", mock_upstream)],
        extra_env={"THRIFTGATE_CACHE_POLL_INTERVAL_S": "0.2"},
    )
    db = fresh_pg_url.rsplit("/", 1)[1]
    admin_url = fresh_pg_url.rsplit("/", 1)[0] + "/postgres"
    try:
        try:
            _, key = gw.new_tenant()
            ask(gw, key, "warm up")
            start = len(gw.log())
            sql(admin_url, f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
            sql(
                admin_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                db,
            )
            for i in range(6):
                ask(gw, key, f"during the outage {i}")  # each one's cache write fails
            time.sleep(4)  # ~20 follower polls
            during = gw.log()[start:]
            assert "cache follower: polling the table failed" in during
            assert during.count("cache follower: polling the table") == 1, during[-4000:]
            assert during.count("writing a cache entry") == 1, during[-4000:]
            # each process shares its rate-limit counts every second (limits_sync): one line
            assert during.count("sharing rate-limit counts") == 1, during[-4000:]
            # one traceback per failing activity, with its first failure
            assert logged_tracebacks(during) <= 3, during[-4000:]
        finally:
            sql(admin_url, f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
        assert wait_for(
            lambda: "cache follower: polling the table works again" in gw.log()[start:],
            timeout_s=20,
        )
    finally:
        gw.stop()
