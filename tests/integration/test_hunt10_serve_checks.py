"""`serve` without migrations on start checks what it can in one line each (hunt10 h6)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from gateway.db.migrate import upgrade_head_sync
from tests.integration.test_hunt10_postgres_operators import PgBouncer, needs_pgbouncer
from tests.support.servers import PG_BASE, free_port, sql

pytestmark = pytest.mark.integration


def serve(db: str, *flags: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`thriftgate serve` until it exits or `timeout` (then it was serving: rc None)."""
    env = {**os.environ, "THRIFTGATE_DATABASE_URL": db, "THRIFTGATE_MIGRATE_ON_START": "false"}
    args = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(free_port()), *flags]
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its workers too can be killed, as a group
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(args, proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # four workers still loading the model on a busy box
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=30)
        return subprocess.CompletedProcess(args, None, out, err)  # type: ignore[arg-type]


def test_serve_refuses_a_database_not_yet_migrated(fresh_pg_url: str) -> None:
    """It started, and every request was a 500 (hundreds of traceback lines)."""
    out = serve(fresh_pg_url)
    assert out.returncode == 1, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "thriftgate migrate" in lines[0], out.stderr


@needs_pgbouncer
def test_serve_refuses_a_transaction_pooler_without_migrating(fresh_pg_url: str) -> None:
    bouncer = PgBouncer("transaction")
    try:
        out = serve(bouncer.url + fresh_pg_url.rsplit("/", 1)[1])
        assert out.returncode == 1, out.stderr[-2000:]
        assert "pool_mode=session" in out.stderr and "Traceback" not in out.stderr
    finally:
        bouncer.stop()


def test_serve_still_starts_while_the_database_is_unreachable() -> None:
    """Fail-open: it serves and spools through an outage, so an unreachable database is no
    reason to refuse to start."""
    out = serve(f"postgresql://postgres@127.0.0.1:{free_port()}/nothere", timeout=20)
    assert out.returncode is None, out.stderr[-2000:]


def test_serve_warns_when_its_workers_may_run_short_of_connections(fresh_pg_url: str) -> None:
    upgrade_head_sync(fresh_pg_url)
    server_max = int(sql(fresh_pg_url, "SHOW max_connections")[0][0])
    if server_max >= 4 * 58 + 10:
        pytest.skip("this Postgres has room for four workers")
    out = serve(PG_BASE + "/" + fresh_pg_url.rsplit("/", 1)[1], "--workers", "4", timeout=15)
    assert "may hold up to 232 connections" in out.stderr, out.stderr[-2000:]
