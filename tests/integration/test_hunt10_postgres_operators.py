"""Postgres as operators run it: libpq URL parameters, a non-default schema named in the URL, a
role that may not create tables, PgBouncer in front (hunt10 h6)."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import openai
import pytest
import yaml
from sqlalchemy.engine import make_url

from gateway.db.migrate import connection_shortfall_sync
from gateway.db.session import create_engine
from tests.support.servers import (
    PG_BASE,
    GatewayServer,
    MockUpstreamServer,
    Process,
    create_database,
    drop_database,
    free_port,
    mock_deployment,
    sdk_client,
    sql,
    wait_for,
    wait_http,
)

pytestmark = pytest.mark.integration

PRICED = {"input_cost_per_mtok": 1, "output_cost_per_mtok": 1}


class AppServer(Process):
    """The app run by uvicorn itself (as under gunicorn or a platform's own runner), without
    `thriftgate serve`'s start-up checks: what /readyz must say on its own."""

    def __init__(
        self, tmp: Path, db_url: str, deployments: list[dict[str, Any]], env: dict[str, str]
    ) -> None:
        self.port = free_port()
        config = tmp / f"app-{self.port}.yaml"
        config.write_text(yaml.safe_dump({"deployments": deployments}))
        full_env = {
            **os.environ,
            "THRIFTGATE_DATABASE_URL": db_url,
            "THRIFTGATE_CONFIG": str(config),
            "THRIFTGATE_SPOOL_DIR": str(tmp / f"spool-{self.port}"),
            "MOCK_PROVIDER_KEY": "sk-mock-provider-secret-0123456789",
            **env,
        }
        args = [sys.executable, "-m", "uvicorn", "gateway.app:app_from_env", "--factory"]
        args += ["--port", str(self.port)]
        super().__init__(args, full_env, tmp / f"app-{self.port}.log")
        self.base = f"http://127.0.0.1:{self.port}"
        wait_http(self.base + "/healthz", 90, self.proc)


def readyz(gw: GatewayServer | AppServer) -> httpx.Response:
    return httpx.get(gw.base + "/readyz", timeout=10)


def cli(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "THRIFTGATE_DATABASE_URL": db}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_documented_url_parameters_keep_budgets_and_revocation_working(
    session_tmp: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer
) -> None:
    """`?prepared_statement_cache_size=0` (README) and `?sslmode=prefer` reached the budget
    pool's and the key-event listener's raw asyncpg connections as server settings, which
    Postgres refused: every budget check failed and fail-open served a spent tenant, and
    revocations waited for the key-cache TTL; /readyz said ok."""
    url = fresh_pg_url + "?prepared_statement_cache_size=0&sslmode=prefer"
    deps = [mock_deployment("m", "m", mock_upstream, **PRICED)]
    gw = GatewayServer(session_tmp, url, deps)
    try:
        _tid, key = gw.new_tenant(budget_usd="0.000005")  # one answer ($0.000006) spends it
        client = sdk_client(gw, key)
        ask = {"model": "m", "max_tokens": 20}
        client.chat.completions.create(**ask, messages=[{"role": "user", "content": "first"}])
        settled = "SELECT sum(reserved_usd + reserved_prev_usd) AS r FROM budget_counters"
        assert wait_for(lambda: sql(fresh_pg_url, settled)[0]["r"] == 0)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(**ask, messages=[{"role": "user", "content": "second"}])
        listening = wait_for(lambda: readyz(gw).json().get("key_events") == "listening", 15)
        assert listening, readyz(gw).text
        assert "budget store unavailable" not in gw.log()
    finally:
        gw.stop()


@pytest.fixture
def owner_and_app_roles() -> Iterator[tuple[str, str, str]]:
    """A database whose schema `tg` belongs to an owner role, and an app role that may use
    and write its tables but create nothing, with statement and idle-in-transaction timeouts
    set on it. Yields (database URL without user, owner, app)."""
    suffix = uuid.uuid4().hex[:8]
    owner, app = f"tg_owner_{suffix}", f"tg_app_{suffix}"
    url = create_database()
    sql(url, f'CREATE ROLE "{owner}" LOGIN')
    sql(url, f'CREATE ROLE "{app}" LOGIN')
    sql(url, f'CREATE SCHEMA tg AUTHORIZATION "{owner}"')
    sql(url, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    sql(url, f'GRANT USAGE ON SCHEMA tg TO "{app}"')
    for what, grants in (("TABLES", "SELECT, INSERT, UPDATE, DELETE"), ("SEQUENCES", "USAGE")):
        sql(
            url,
            f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA tg '
            f'GRANT {grants} ON {what} TO "{app}"',
        )
    sql(url, f"ALTER ROLE \"{app}\" SET statement_timeout = '5s'")
    sql(url, f"ALTER ROLE \"{app}\" SET idle_in_transaction_session_timeout = '2s'")
    try:
        yield url, owner, app
    finally:
        drop_database(url)
        sql(PG_BASE.replace("postgresql://", "postgresql+asyncpg://") + "/postgres",
            f'DROP ROLE IF EXISTS "{owner}", "{app}"')  # fmt: skip


def as_role(url: str, role: str, query: str) -> str:
    parsed = make_url(url).set(username=role)
    return parsed.render_as_string(hide_password=False) + query


def test_an_app_role_without_create_serves_the_schema_named_in_options(
    session_tmp: Path,
    owner_and_app_roles: tuple[str, str, str],
    mock_upstream: MockUpstreamServer,
) -> None:
    """libpq's `?options=-csearch_path%3Dtg` (how a non-default schema is named in a URL) was
    refused at start; an owner migrates, and a role that may not create tables serves."""
    url, owner, app = owner_and_app_roles
    schema = "?options=-csearch_path%3Dtg"
    out = cli("migrate", db=as_role(url, owner, schema))
    assert out.returncode == 0, out.stderr[-2000:]
    tables = sql(url, "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'tg'")
    assert tables[0]["n"] > 5
    deps = [mock_deployment("m", "m", mock_upstream, **PRICED)]
    gw = GatewayServer(
        session_tmp,
        as_role(url, app, schema),
        deps,
        workers=2,
        extra_env={"THRIFTGATE_MIGRATE_ON_START": "false"},
    )
    try:
        _, key = gw.new_tenant(budget_usd="5")
        reply = sdk_client(gw, key).chat.completions.with_raw_response.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
        request_id = reply.headers["x-request-id"]
        rows = wait_for(
            lambda: sql(url, "SELECT 1 FROM tg.usage_ledger WHERE request_id = $1", request_id)
        )
        assert rows
        assert wait_for(lambda: readyz(gw).json().get("key_events") == "listening", 15)
    finally:
        gw.stop()


# -- PgBouncer ---------------------------------------------------------------------------


class PgBouncer:
    """PgBouncer on a free port in front of the test Postgres, in `pool_mode`."""

    def __init__(self, pool_mode: str) -> None:
        pg = make_url(PG_BASE)
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tg-pgbouncer-"))
        self.dir.chmod(0o777)  # run as another user when we are root (it refuses root)
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host={pg.host or '127.0.0.1'} port={pg.port or 5432} user={pg.username}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = any\npool_mode = {pool_mode}\nmax_client_conn = 200\n"
            f"default_pool_size = 20\nlogfile = {self.dir / 'pgbouncer.log'}\n"
            "ignore_startup_parameters = extra_float_digits\n"
        )
        ini.chmod(0o644)
        args = ["pgbouncer", str(ini)]
        if os.geteuid() == 0:
            user = "postgres" if _user_exists("postgres") else "nobody"
            args[1:1] = ["-u", user]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"postgresql+asyncpg://{pg.username}@127.0.0.1:{self.port}/"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import socket

                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("pgbouncer did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


needs_pgbouncer = pytest.mark.skipif(
    shutil.which("pgbouncer") is None, reason="pgbouncer is not installed"
)


@needs_pgbouncer
def test_transaction_pooling_is_refused_in_one_line_naming_the_fix(
    session_tmp: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer
) -> None:
    """Through PgBouncer in transaction mode, `migrate` succeeded and `serve` then failed on
    another client's prepared statement ("__asyncpg_stmt_1__ already exists"), or the app
    started without that check and answered 500s with /readyz ok; LISTEN never heard a
    revocation."""
    bouncer = PgBouncer("transaction")
    try:
        url = bouncer.url + fresh_pg_url.rsplit("/", 1)[1]
        out = cli("migrate", db=url)
        assert out.returncode == 1, out.stderr[-2000:]
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "pool_mode=session" in lines[0], out.stderr
        # migrated directly, the app served through the pooler without serve's checks
        assert cli("migrate", db=fresh_pg_url).returncode == 0
        deps = [mock_deployment("m", "m", mock_upstream)]
        env = {"THRIFTGATE_MIGRATE_ON_START": "false"}
        gw = AppServer(session_tmp, url, deps, env)
        try:
            seen = wait_for(lambda: readyz(gw).status_code == 503, 20)
            assert seen, readyz(gw).text
            assert readyz(gw).json()["database"] == "unsupported-pooler"
            assert "pool_mode=transaction" in gw.log()
        finally:
            gw.stop()
    finally:
        bouncer.stop()


def test_a_database_not_yet_migrated_is_not_ready(
    session_tmp: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer
) -> None:
    """With THRIFTGATE_MIGRATE_ON_START=false before `thriftgate migrate` ran (a new version
    rolled out first), every request was a 500 and /readyz said ok: a load balancer sent it
    traffic. It is 503 'migrations-pending' until the migrations are applied (the app run
    without `serve`, whose own check refuses to start on such a database)."""
    deps = [mock_deployment("m", "m", mock_upstream)]
    env = {"THRIFTGATE_MIGRATE_ON_START": "false"}
    gw = AppServer(session_tmp, fresh_pg_url, deps, env)
    try:
        pending = readyz(gw)
        assert pending.status_code == 503, pending.text
        assert pending.json()["database"] == "migrations-pending"
        assert cli("migrate", db=fresh_pg_url).returncode == 0
        assert readyz(gw).status_code == 200, readyz(gw).text
    finally:
        gw.stop()


def test_serve_can_say_the_connections_its_workers_may_need(
    owner_and_app_roles: tuple[str, str, str],
) -> None:
    """Each worker may hold 58 connections; with `--workers 4` against a role limited to 30,
    budgets failed open under load (1,005 warnings in 15 s) and nothing had said why."""
    url, _, app = owner_and_app_roles
    sql(url, f'ALTER ROLE "{app}" CONNECTION LIMIT 30')
    short = connection_shortfall_sync(as_role(url, app, ""), 4)
    assert short is not None
    assert "232 connections" in short and "CONNECTION LIMIT is 30" in short, short
    sql(url, f'ALTER ROLE "{app}" CONNECTION LIMIT -1')
    server_max = int(sql(url, "SHOW max_connections")[0][0])
    short = connection_shortfall_sync(as_role(url, app, ""), 4)
    if server_max < 232:  # the default 100
        assert short is not None and f"max_connections is {server_max}" in short, short
    one = connection_shortfall_sync(as_role(url, app, ""), 1)
    assert one is None or "max_connections" in one  # never the role's limit: it has none


def test_tls_files_in_the_url_reach_the_driver(tmp_path: Path, fresh_pg_url: str) -> None:
    """`?sslmode=verify-full&sslrootcert=/path/ca.pem` (how RDS, Azure and Cloud SQL document
    verified TLS) was refused at start ('URL parameter sslrootcert is not supported'), so
    verify-ca and verify-full could not name their CA. The file now reaches asyncpg: a path
    that does not exist is its error, not a refusal."""
    missing = tmp_path / "no-such-ca.pem"
    out = cli("migrate", db=f"{fresh_pg_url}?sslmode=verify-full&sslrootcert={missing}")
    assert out.returncode == 1
    assert "not supported" not in out.stderr
    assert "FileNotFoundError" in out.stderr, out.stderr

    async def engine_connects() -> None:  # the SQLAlchemy engine's connections too
        engine = create_engine(f"{fresh_pg_url}?sslmode=verify-ca&sslrootcert={missing}")
        try:
            async with engine.connect():
                pass
        finally:
            await engine.dispose()

    with pytest.raises(FileNotFoundError):
        asyncio.run(engine_connects())


def test_readyz_answers_while_the_database_does_not(
    session_tmp: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer
) -> None:
    """A database that stops answering (a stalled server, a failover, here a lock on the table
    /readyz reads) hung the probe for as long as it did: a load balancer's probe timed out
    with no answer. It is 503 'unresponsive' within seconds, and ready again after."""
    deps = [mock_deployment("m", "m", mock_upstream)]
    gw = GatewayServer(session_tmp, fresh_pg_url, deps)
    try:
        assert readyz(gw).status_code == 200

        async def while_locked() -> tuple[float, httpx.Response]:
            conn = await asyncpg.connect(fresh_pg_url.replace("+asyncpg", ""))
            try:
                async with conn.transaction():
                    await conn.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
                    started = time.monotonic()
                    answer = await asyncio.to_thread(readyz, gw)
                    return time.monotonic() - started, answer
            finally:
                await conn.close()

        took, answer = asyncio.run(while_locked())
        assert took < 8, took
        assert answer.status_code == 503 and answer.json()["database"] == "unresponsive"
        assert wait_for(lambda: readyz(gw).status_code == 200, 10), readyz(gw).text
    finally:
        gw.stop()


def test_a_libpq_multi_host_url_fails_over_to_the_host_that_answers(fresh_pg_url: str) -> None:
    """libpq's several hosts (`u@db1:5432,db2:5432/app?target_session_attrs=read-write`, how a
    Patroni or multi-AZ primary is named) were an unparsable URL: 'invalid literal for int()
    with base 10: ...' at start, though target_session_attrs was a supported parameter."""
    pg = make_url(PG_BASE)
    dead = f"127.0.0.1:{free_port()}"
    name = fresh_pg_url.rsplit("/", 1)[1]
    url = (
        f"postgresql://{pg.username}@{dead},{pg.host}:{pg.port or 5432}/{name}"
        "?target_session_attrs=read-write"
    )
    out = cli("migrate", db=url)
    assert out.returncode == 0, out.stderr[-2000:]
    assert sql(fresh_pg_url, "SELECT count(*) AS n FROM alembic_version")[0]["n"] == 1


@pytest.mark.parametrize("who", ["database", "role"])
def test_a_database_or_role_that_does_not_exist_is_one_line(fresh_pg_url: str, who: str) -> None:
    """The pooler check's own connection let asyncpg's error out as a traceback ('database
    "x" does not exist'), where the CLI says database errors in one line."""
    url = make_url(fresh_pg_url)
    url = url.set(database="no_such_db") if who == "database" else url.set(username="no_such")
    out = cli("migrate", db=url.render_as_string(hide_password=False))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.startswith("error: database") and "does not exist" in out.stderr


def test_a_least_privilege_role_starts_with_migrations_on_start(
    session_tmp: Path,
    owner_and_app_roles: tuple[str, str, str],
    mock_upstream: MockUpstreamServer,
) -> None:
    """A role that may write the gateway's tables but not alembic_version (an owner migrates)
    was refused at start by the read-only check ('permission denied for table
    alembic_version'), with THRIFTGATE_MIGRATE_ON_START at its default; one that may not
    write the ledger is refused saying what to grant."""
    url, owner, app = owner_and_app_roles
    schema = "?options=-csearch_path%3Dtg"
    assert cli("migrate", db=as_role(url, owner, schema)).returncode == 0
    sql(url, f'REVOKE INSERT, UPDATE, DELETE ON tg.alembic_version FROM "{app}"')
    deps = [mock_deployment("m", "m", mock_upstream)]
    gw = GatewayServer(session_tmp, as_role(url, app, schema), deps)
    gw.stop()
    sql(url, f'REVOKE INSERT ON tg.usage_ledger FROM "{app}"')
    out = cli("serve", "--port", str(free_port()), db=as_role(url, app, schema))
    assert out.returncode == 1
    assert "INSERT, UPDATE on usage_ledger" in out.stderr and "Traceback" not in out.stderr


def test_every_connection_carries_the_application_name(
    session_tmp: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer
) -> None:
    """`?application_name=` named the SQLAlchemy pool's connections only: the budget pool's and
    the key-event listener's were anonymous in pg_stat_activity."""
    name = f"tg-h6-{uuid.uuid4().hex[:6]}"
    deps = [mock_deployment("m", "m", mock_upstream, **PRICED)]
    gw = GatewayServer(session_tmp, f"{fresh_pg_url}?application_name={name}", deps)
    try:
        _, key = gw.new_tenant(budget_usd="5")  # a budget: the reservation pool connects
        sdk_client(gw, key).chat.completions.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
        assert wait_for(lambda: readyz(gw).json().get("key_events") == "listening", 15)
        database = fresh_pg_url.rsplit("/", 1)[1]
        rows = sql(
            fresh_pg_url,
            "SELECT application_name AS name, count(*) AS n FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid() GROUP BY 1",
            database,
        )
        names = {r["name"]: r["n"] for r in rows}
        assert set(names) == {name}, names
        assert names[name] >= 3  # the pool, the budget pool, the listener
    finally:
        gw.stop()
