"""libpq URL parameters and a bad port: translated where asyncpg has them, refused in one line
where it has not (they were 90-115-line tracebacks), never a password on the terminal."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from sqlalchemy import text

from gateway.db.session import UnsupportedDatabase, check_supported, create_engine
from tests.support.servers import PG_BASE

pytestmark = pytest.mark.integration

PG = PG_BASE.replace("postgresql://", "postgresql+asyncpg://")


def cli(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "THRIFTGATE_DATABASE_URL": db, "THRIFTGATE_MIGRATE_ON_START": "false"}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_connect_timeout_and_application_name_reach_asyncpg() -> None:
    async def go() -> tuple[str, str]:
        engine = create_engine(f"{PG}/postgres?connect_timeout=10&application_name=tg-url-test")
        try:
            async with engine.connect() as conn:
                name = await conn.execute(text("SELECT current_setting('application_name')"))
                return str(name.scalar_one()), str(engine.url)
        finally:
            await engine.dispose()

    name, url = asyncio.run(go())
    assert name == "tg-url-test"
    assert "connect_timeout" not in url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/postgres?keepalives=1", "URL parameter 'keepalives' is not supported"),
        ("/postgres?statement_cache_size=0", "pool_mode=session"),
        ("/postgres?connect_timeout=soon", "connect_timeout must be a positive number"),
    ],
)
def test_unsupported_parameters_are_refused_by_name(url: str, message: str) -> None:
    with pytest.raises(UnsupportedDatabase, match=message):
        check_supported(PG + url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:s3cret@127.0.0.1:5432/postgres?connect_timeout=10",
        "postgresql://postgres:s3cret@127.0.0.1:5432/postgres?application_name=thriftgate",
    ],
)
def test_the_cli_accepts_libpq_parameters(url: str) -> None:
    out = cli("migrate", db=url)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("command", "url"),
    [
        (["migrate"], "postgresql+asyncpg://postgres:s3cret@127.0.0.1:abc/x"),
        (["serve"], "postgresql+asyncpg://postgres:s3cret@127.0.0.1:abc/x"),
        (["tenant", "list"], "postgresql://postgres:s3cret@127.0.0.1/postgres?sslcompression=1"),
        (["serve"], "postgresql://postgres:s3cret@127.0.0.1/postgres?sslcompression=1"),
    ],
)
def test_a_bad_port_or_parameter_is_one_line(command: list[str], url: str) -> None:
    out = cli(*command, db=url)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode != 0 and len(lines) == 1, out.stderr[-3000:]
    assert lines[0].startswith("error: database "), out.stderr
    assert "s3cret" not in out.stderr
