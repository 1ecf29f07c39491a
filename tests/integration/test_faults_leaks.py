"""No task, connection or memory leak over many faulty requests.

A real gateway serves a mix of refused connections, 503 bursts, hangs past the deadline,
truncated and malformed streams, missing usage and clients that hang up mid-stream. After a
warm-up, its open file descriptors, connections and RSS are sampled; after many more faulty
requests they must be where they were (small slack for allocator noise). Every request that
reached the pipeline has a ledger row. `benchmarks/soak.py` runs the same mix at 10k+ requests.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support.faults import FAULT_MIX, fault_deployments, send_chat, start_fault_mocks
from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    create_database,
    drop_database,
    sql,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WARMUP = 300
MEASURED = 1200
CONCURRENCY = 16
# Idle keep-alive connections to the upstreams are not a leak: the pool is unbounded with a
# 60 s keep-alive, so after a burst it can hold one per concurrent attempt and upstream (CI
# under load saw +11 after the 1,200 requests, +1 to +6 on a quiet box). A leak grows with the
# requests: one descriptor per 40 faulty requests would still pass this bound.
FD_SLACK = 2 * CONCURRENCY
RSS_SLACK_MB = 6.0  # the prepared-statement growth fixed in ledger.py measured +10.6 MiB here


class Rig:
    def __init__(self, tmp: Path) -> None:
        try:
            self._start(tmp)
        except BaseException:
            self.close()  # nothing the failed start already launched may outlive the test
            raise

    def _start(self, tmp: Path) -> None:
        self.db = create_database("tg_leaks")
        self.mocks: dict[str, MockUpstreamServer] = {}
        start_fault_mocks(tmp, self.mocks)
        self.gw = GatewayServer(tmp, self.db, fault_deployments(self.mocks))
        self.key = self.gw.new_tenant()[1]
        self.proc = psutil.Process(self.gw.proc.pid)
        self.request_ids: list[str] = []

    def close(self) -> None:
        if hasattr(self, "gw"):
            self.gw.stop()
        for mock in getattr(self, "mocks", {}).values():
            mock.stop()
        if hasattr(self, "db"):
            drop_database(self.db)

    def sample(self) -> tuple[int, int, float]:
        fds = self.proc.num_fds()
        conns = len(self.proc.net_connections(kind="tcp"))
        return fds, conns, self.proc.memory_info().rss / 2**20

    async def one(self, client: httpx.AsyncClient, model: str, stream: bool, hang_up: bool) -> None:
        rid = "leak-" + uuid.uuid4().hex
        self.request_ids.append(rid)
        status = await send_chat(client, model, stream, hang_up, rid, f"hello {rid}")
        assert status in (200, 502, 503, 504), (model, stream, status)

    async def run(self, n: int) -> None:
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(
            base_url=self.gw.url,
            timeout=30,
            limits=limits,
            headers={"Authorization": f"Bearer {self.key}", "Cache-Control": "no-cache, no-store"},
        ) as client:
            work = itertools.islice(itertools.cycle(FAULT_MIX), n)
            sem = asyncio.Semaphore(CONCURRENCY)

            async def guarded(item: tuple[str, bool, bool]) -> None:
                async with sem:
                    await self.one(client, *item)

            await asyncio.gather(*(guarded(item) for item in work))


@pytest.fixture(scope="module")
def rig(session_tmp: Path) -> Iterator[Rig]:
    tmp = session_tmp / "faults-leaks"
    tmp.mkdir(exist_ok=True)
    r = Rig(tmp)
    yield r
    r.close()


def settle(rig: Rig) -> tuple[int, int, float]:
    """Sample once in-flight work (hung upstream handlers, ledger flushes) has drained."""
    time.sleep(1.5)
    return rig.sample()


def test_no_fd_connection_or_memory_growth_over_faulty_requests(rig: Rig) -> None:
    asyncio.run(rig.run(WARMUP))
    fds0, conns0, rss0 = settle(rig)
    t0 = time.perf_counter()
    asyncio.run(rig.run(MEASURED))
    elapsed = time.perf_counter() - t0
    fds1, conns1, rss1 = settle(rig)
    report = (
        f"{MEASURED} faulty requests in {elapsed:.1f}s: fds {fds0}->{fds1}, "
        f"tcp {conns0}->{conns1}, rss {rss0:.1f}->{rss1:.1f} MiB"
    )
    print(report)
    assert fds1 <= fds0 + FD_SLACK, report
    assert conns1 <= conns0 + FD_SLACK, report
    assert rss1 <= rss0 + RSS_SLACK_MB, report
    assert rig.gw.proc.poll() is None


def test_every_faulty_request_has_one_ledger_row(rig: Rig) -> None:
    expected = set(rig.request_ids)
    assert len(expected) == WARMUP + MEASURED

    def rows() -> list[Any]:
        got = sql(
            rig.db,
            "SELECT request_id, status_code, error_code FROM usage_ledger "
            "WHERE request_id LIKE 'leak-%'",
        )
        return got if len(got) >= len(expected) else []

    got = wait_for(rows, 30) or sql(
        rig.db,
        "SELECT request_id, status_code, error_code "
        "FROM usage_ledger WHERE request_id LIKE 'leak-%'",
    )
    ids = [r["request_id"] for r in got]
    assert len(ids) == len(set(ids)), "duplicated ledger rows"
    assert set(ids) == expected, f"missing {len(expected - set(ids))} rows"
    statuses = {(r["status_code"], r["error_code"]) for r in got}
    # The mix really exercised the failure paths, and each is recorded as such.
    for want in [
        (502, "upstream_error"),
        (504, "upstream_timeout"),
        (200, None),
        (499, "client_disconnected"),
    ]:
        assert want in statuses, statuses
