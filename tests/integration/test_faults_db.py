"""Database faults: Postgres crashes and restarts under load.

A throwaway Postgres cluster (its own data directory and port, so nobody else's database is
touched) serves two gateways: one with `budget_db_down_policy=fail-open` (the default) and one
with `fail-closed`. Under steady load the cluster is stopped with `-m immediate` (a crash),
kept down for a few seconds and started again. Requirements:

- fail-open keeps serving every request (keys from the cache, even stale; budgets skipped);
  fail-closed refuses budgeted tenants with 503 `budget_store_unavailable` and still serves
  tenants without a budget;
- every ledger row spooled meanwhile reaches the database once it is back: each request that
  reached the pipeline has exactly one row (zero lost, zero duplicated), and the budget counter
  equals the ledger's sum with no reservation left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    free_port,
    mock_deployment,
    sql,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PG_BIN = Path(os.environ.get("THRIFTGATE_PG_BIN", "/usr/lib/postgresql/15/bin"))
DOWN_S = 4.0


class ThrowawayCluster:
    """`initdb` + `pg_ctl` on a free port, run as the postgres user when we are root."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tg-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._as_pg(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        )
        self.start()

    def _as_pg(self, args: list[str]) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(prefix + args, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=200"
        )
        self._as_pg(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                opts,
                "-l",
                str(self.dir / "pg.log"),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )

    def stop(self, mode: str = "fast") -> None:
        self._as_pg([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def create_database(self, name: str) -> str:
        async def go() -> None:
            conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres")
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(go())
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class Load:
    """Client threads sending requests; remembers what each got and when."""

    def __init__(self, gw: GatewayServer, keys: list[str], threads: int = 4) -> None:
        self.gw, self.keys = gw, keys
        self.results: list[tuple[str, str, int, float, str]] = []  # rid, key, status, t, code
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, i: int) -> None:
        with httpx.Client(base_url=self.gw.url, timeout=30) as client:
            n = 0
            while not self._stop.is_set():
                key = self.keys[(i + n) % len(self.keys)]
                n += 1
                rid = "dbfault-" + uuid.uuid4().hex
                r = client.post(
                    "/chat/completions",
                    headers={
                        "Authorization": f"Bearer {key}",
                        "x-request-id": rid,
                        "Cache-Control": "no-store",
                    },
                    json={
                        "model": "gpt-4o-mini",
                        "max_tokens": 20,
                        "messages": [{"role": "user", "content": "one two three"}],
                    },
                )
                code = r.json().get("error", {}).get("code") if r.status_code != 200 else ""
                self.results.append((rid, key, r.status_code, time.monotonic(), code or ""))
                time.sleep(0.01)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayCluster]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"Postgres binaries not found at {PG_BIN} (set THRIFTGATE_PG_BIN)")
    c = ThrowawayCluster()
    yield c
    c.destroy()


def test_postgres_crash_and_restart_under_load(
    cluster: ThrowawayCluster, session_tmp: Path, mock_upstream: MockUpstreamServer
) -> None:
    tmp = session_tmp / "faults-db"
    tmp.mkdir(exist_ok=True)
    db = cluster.create_database("tg_dbfault")
    deps = [mock_deployment("mock-mini", "gpt-4o-mini", mock_upstream)]
    env = {"THRIFTGATE_KEY_CACHE_TTL_S": "1", "THRIFTGATE_LEDGER_FLUSH_INTERVAL_S": "0.05"}
    open_gw = GatewayServer(tmp, db, deps, extra_env=env)
    closed_gw = GatewayServer(
        tmp, db, deps, extra_env={**env, "THRIFTGATE_BUDGET_DB_DOWN_POLICY": "fail-closed"}
    )
    try:
        budgeted_id, budgeted = open_gw.new_tenant(budget_usd="1000")
        plain_id, plain = open_gw.new_tenant()
        with (
            Load(open_gw, [budgeted, plain]) as open_load,
            Load(closed_gw, [budgeted, plain], threads=2) as closed_load,
        ):
            time.sleep(2.0)
            cluster.stop("immediate")
            down_from = time.monotonic()
            time.sleep(DOWN_S)
            down_until = time.monotonic()
            cluster.start()
            time.sleep(3.0)

        def during(load: Load, key: str) -> list[tuple[int, str]]:
            return [
                (s, c)
                for _, k, s, t, c in load.results
                if k == key and down_from + 0.5 < t < down_until
            ]

        # fail-open: everything served, before, during and after the outage.
        assert len(during(open_load, budgeted)) > 5 and len(during(open_load, plain)) > 5
        bad = [(s, c) for _, _, s, _, c in open_load.results if s != 200]
        assert not bad, f"fail-open refused requests: {bad[:10]}"
        # fail-closed: budgeted tenant refused with a clear 503, the other one served.
        refused = during(closed_load, budgeted)
        assert refused and all(x == (503, "budget_store_unavailable") for x in refused), refused
        assert during(closed_load, plain) and all(s == 200 for s, _ in during(closed_load, plain))

        # Zero lost, zero duplicated: one row per request, once the database is back.
        sent = {rid: s for load in (open_load, closed_load) for rid, _, s, _, _ in load.results}

        def rows() -> list[Any]:
            got = sql(
                db,
                "SELECT request_id, status_code FROM usage_ledger "
                "WHERE request_id LIKE 'dbfault-%'",
            )
            return got if len(got) >= len(sent) else []

        got = wait_for(rows, 30, 0.2) or sql(
            db, "SELECT request_id, status_code FROM usage_ledger WHERE request_id LIKE 'dbfault-%'"
        )
        ids = [r["request_id"] for r in got]
        assert len(ids) == len(set(ids)), "duplicated ledger rows"
        missing = set(sent) - set(ids)
        assert not missing, f"{len(missing)} of {len(sent)} ledger rows lost"
        assert {r["request_id"]: r["status_code"] for r in got} == sent
        served_down = len(during(open_load, budgeted)) + len(during(open_load, plain))
        print(f"{len(sent)} requests, {served_down} served by fail-open while Postgres was down")

        # Budget counters settle to exactly the ledger's sum; no reservation left behind.
        def settled() -> list[Any]:
            got = sql(
                db,
                "SELECT c.spent_usd, c.reserved_usd, (SELECT sum(cost_usd) FROM "
                "usage_ledger l WHERE l.tenant_id = c.tenant_id) AS ledger "
                "FROM budget_counters c WHERE c.tenant_id = $1",
                budgeted_id,
            )
            return got if got and got[0]["reserved_usd"] == 0 else []

        counters = wait_for(settled, 15)
        assert counters, sql(db, "SELECT * FROM budget_counters")
        assert counters[0]["spent_usd"] == counters[0]["ledger"]
        assert plain_id
        for gw in (open_gw, closed_gw):
            assert gw.proc.poll() is None
            assert httpx.get(gw.base + "/readyz", timeout=10).status_code == 200
    finally:
        open_gw.stop()
        closed_gw.stop()
