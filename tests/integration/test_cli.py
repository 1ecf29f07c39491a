"""The admin CLI refuses what the admin API refuses, and reports an unreachable database in one
line (no traceback, no password)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def cli(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "THRIFTGATE_DATABASE_URL": db}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tenant", "create", ""], "name"),
        (["tenant", "create", "t", "--budget-usd", "inf"], "budget_usd"),
        (["tenant", "create", "t", "--rpm", "99999999999"], "rpm"),
        (["tenant", "create", "t", "--flags", '{"models": 5}'], "flag 'models'"),
    ],
)
def test_the_cli_refuses_what_the_api_refuses(
    tmp_path: Path, args: list[str], message: str
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    out = cli(*args, db=db)
    assert out.returncode != 0 and out.stderr.startswith("error: ") and message in out.stderr
    assert "Traceback" not in out.stderr
    ok = cli("tenant", "create", "fine", "--budget-usd", "5", db=db)
    assert ok.returncode == 0 and len(ok.stdout.strip()) == 32


def test_migrate_reports_an_unreachable_database_in_one_line() -> None:
    out = cli("migrate", db="postgresql+asyncpg://postgres:s3cret@127.0.0.1:1/nowhere")
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: database"), out.stderr
    assert "s3cret" not in out.stderr


def test_serve_refuses_a_config_that_cannot_work_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "two-defaults.yaml"
    config.write_text(
        "deployments:\n"
        "  - {name: a, model: m, api_base: 'http://127.0.0.1:9/v1', default: true}\n"
        "  - {name: b, model: m, provider: nosuchprovider, default: true}\n"
    )
    out = cli("serve", "--config", str(config), db=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: config: "), out.stderr
    assert "unknown provider 'nosuchprovider'" in lines[0]
    assert "more than one default" in lines[0]


def test_a_database_error_names_host_and_database_but_no_query_string() -> None:
    url = "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere?password=hunter2pass"
    out = cli("tenant", "list", db=url)
    assert out.returncode == 1
    assert out.stderr.startswith("error: database '127.0.0.1:1/nowhere': "), out.stderr
    assert "hunter2pass" not in out.stderr


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("THRIFTGATE_PORT", "abc"),
        ("THRIFTGATE_PORT", "99999"),  # uvicorn would wrap it and listen somewhere else
        ("THRIFTGATE_WORKERS", "0"),
        ("THRIFTGATE_MAX_BODY_BYTES", "-1"),  # every request would be a 413
        ("THRIFTGATE_LOG_LEVEL", "verbose"),
        ("THRIFTGATE_ADMIN_KEY", " key-with-a-blank "),  # nobody could ever send it
        ("THRIFTGATE_BUDGET_DB_DOWN_POLICY", "sometimes"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(tmp_path: Path, var: str, value: str) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    for args in (["serve"], ["tenant", "list"]):
        out = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args],
            env={**os.environ, "THRIFTGATE_DATABASE_URL": db, var: value},
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert out.returncode == 2 and len(lines) == 1, out.stderr
        assert lines[0].startswith(f"error: {var}: "), out.stderr


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere",  # nothing listens
        "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres?sslmode=bogus",
        "nosuchdriver://x/y",
    ],
)
def test_serve_reports_a_database_it_cannot_use_in_one_line(url: str) -> None:
    out = cli("serve", db=url)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert lines[0].startswith("error: database "), out.stderr


def test_a_key_can_be_listed_and_revoked_from_the_cli_by_id_or_by_the_key(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}"
    assert cli("tenant", "create", "acme", db=db).returncode == 0
    made = [cli("key", "create", "acme", db=db) for _ in range(2)]
    keys = [m.stdout.strip() for m in made]
    assert all(k.startswith("tg-") for k in keys)  # stdout is the key alone
    listed = json.loads(cli("key", "list", "acme", db=db).stdout)
    ids = [k["id"] for k in listed]
    assert len(ids) == 2 and all(i in m.stderr for i, m in zip(ids, made, strict=True))
    assert not any(k in json.dumps(listed) for k in keys)  # never the key itself
    by_key = cli("key", "revoke", keys[0], db=db)  # a leaked key, as its holder has it
    assert by_key.returncode == 0 and json.loads(by_key.stdout)["revoked_at"], by_key.stderr
    by_id = cli("key", "revoke", ids[1], db=db)
    assert by_id.returncode == 0 and json.loads(by_id.stdout)["revoked_at"]
    unknown = cli("key", "revoke", "tg-not-a-real-key", db=db)
    assert unknown.returncode == 1 and "tg-not-a-real-key" not in unknown.stderr


@pytest.mark.parametrize(
    ("args", "flag", "message"),
    [
        (["--port", "99999"], "--port", "less than or equal to 65535"),  # listened on 34463
        (["--port", "0"], "--port", "greater than or equal to 1"),
        (["--port", "-1"], "--port", "greater than or equal to 1"),
        (["--workers", "2000"], "--workers", "less than or equal to"),  # forked 2,000 workers
        (["--workers", "0"], "--workers", "greater than or equal to 1"),
    ],
)
def test_serve_flags_are_range_checked_as_the_variables_are(
    tmp_path: Path, args: list[str], flag: str, message: str
) -> None:
    out = cli("serve", *args, db=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith(f"error: {flag}: ") and message in lines[0], out.stderr
    assert not (tmp_path / "x.db").exists()  # refused before anything ran


def test_the_workers_variable_has_the_same_cap(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve"],
        env={**os.environ, "THRIFTGATE_DATABASE_URL": db, "THRIFTGATE_WORKERS": "2000"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and out.stderr.startswith("error: THRIFTGATE_WORKERS: ")


@pytest.mark.parametrize(
    "url",
    ["mysql://u:s3cret@localhost/db", "mysql+aiomysql://u:s3cret@localhost/db",
     "mssql://u:s3cret@localhost/db", "oracle://u:s3cret@localhost/db"],
)  # fmt: skip
@pytest.mark.parametrize("command", [["serve"], ["migrate"], ["tenant", "list"]])
def test_an_unsupported_database_is_one_line_naming_the_supported_ones(
    url: str, command: list[str]
) -> None:
    out = cli(*command, db=url)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert lines[0].startswith("error: database 'localhost/db': "), out.stderr
    assert "postgresql://" in lines[0] and "sqlite://" in lines[0] and "s3cret" not in lines[0]
