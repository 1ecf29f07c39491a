"""`thriftgate serve` says what cannot work before it migrates, loads models or binds, in one
line (hardening round 8, the embedded default's first hour)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.db.migrate import upgrade_head_sync

pytestmark = pytest.mark.integration


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr[-3000:]
    return lines[0]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "gw.yaml"
    config.write_text("deployments: []\n")  # nothing to load: the start-up alone is tested
    return {
        "THRIFTGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 's.db'}",
        "THRIFTGATE_CONFIG": str(config),
        "THRIFTGATE_SPOOL_DIR": str(tmp_path / "spool"),
    }


def test_a_port_in_use_is_said_before_anything_starts(tmp_path: Path, env: dict[str, str]) -> None:
    # A second `serve` on the same port migrated, loaded the cache, the router's statistics and
    # the bundled model (18 s here), then printed uvicorn's bind error among its start-up logs
    # and exited 3.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        out = cli("serve", "--port", str(port), env=env)
        elapsed = time.monotonic() - started
    line = one_line(out)
    assert out.returncode == 2
    assert line.startswith(f"error: 127.0.0.1:{port} is already in use"), line
    assert not (tmp_path / "s.db").exists()  # refused before the migrations
    assert elapsed < 30


def test_a_host_that_does_not_resolve_is_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    out = cli("serve", "--port", "1", env={**env, "THRIFTGATE_HOST": "no-such-host.invalid"})
    line = one_line(out)
    assert out.returncode == 2
    assert line.startswith("error: THRIFTGATE_HOST 'no-such-host.invalid'"), line
    assert not (tmp_path / "s.db").exists()


def test_a_read_only_database_is_refused_at_start(tmp_path: Path, env: dict[str, str]) -> None:
    # A database the gateway can read but not write (a file created by `sudo thriftgate ...`,
    # a read replica's URL) served: /readyz said "database: ok" while every ledger row, cache
    # entry and Responses item failed to be written, so no spend was ever recorded.
    db = tmp_path / "s.db"
    upgrade_head_sync(f"sqlite+aiosqlite:///{db}")
    read_only = f"sqlite+aiosqlite:///file:{db}?mode=ro&uri=true"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = cli("serve", "--port", str(port), env={**env, "THRIFTGATE_DATABASE_URL": read_only})
    line = one_line(out)
    assert out.returncode == 1
    assert line.startswith("error: database ") and "readonly database" in line, line


@pytest.mark.parametrize("command", [["serve"], ["migrate"], ["tenant", "list"]])
def test_a_sqlite_database_in_a_missing_directory_is_one_line(
    tmp_path: Path, env: dict[str, str], command: list[str]
) -> None:
    # "unable to open database file", sometimes followed by two tracebacks of aiosqlite's
    # thread reporting to a closed event loop
    missing = tmp_path / "data" / "thriftgate.db"
    out = cli(*command, env={**env, "THRIFTGATE_DATABASE_URL": f"sqlite:///{missing}"})
    line = one_line(out)
    assert out.returncode == 2
    assert (
        line == f"error: THRIFTGATE_DATABASE_URL: directory {str(missing.parent)!r} does not exist"
    )


def test_route_explain_reads_the_config_file_serve_was_given(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # `serve --config gw.yaml` then `route explain --model m` planned the embedded default's
    # deployments: "no deployment serves model 'm'", and explain had no --config to say which
    config = tmp_path / "cloud.yaml"
    config.write_text(
        "deployments:\n"
        "  - {name: cheap-one, model: m, api_base: 'http://127.0.0.1:9/v1',\n"
        "     input_cost_per_mtok: 1, output_cost_per_mtok: 2}\n"
    )
    no_file = {k: v for k, v in env.items() if k != "THRIFTGATE_CONFIG"}
    out = cli("route", "explain", "--model", "m", "--config", str(config), "--cold", env=no_file)
    assert out.returncode == 0, out.stderr
    assert "cheap-one" in out.stdout
    missing = cli("route", "explain", "--model", "m", "--cold", env=no_file)
    assert missing.returncode == 1
    assert "--config" in one_line(missing)  # says where the deployments come from


def test_an_admin_command_that_creates_the_database_says_where(tmp_path: Path) -> None:
    # README: serve in one shell, `tenant create` / `key create` "in a second shell". A second
    # shell in another directory made a new ./thriftgate.db there in silence; its key was then
    # "Incorrect API key provided" on the gateway, which reads its own directory's file.
    elsewhere = tmp_path / "second-shell"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("THRIFTGATE_")}
    run = [sys.executable, "-m", "gateway.cli", "tenant", "create", "demo"]
    first = subprocess.run(run, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert len(first.stdout.strip()) == 32  # stdout is still the id alone
    note = one_line(first)
    assert note.startswith("note: created a new database ") and "THRIFTGATE_DATABASE_URL" in note
    assert str(elsewhere / "thriftgate.db") in note
    again = subprocess.run(
        [*run[:-1], "other"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0 and again.stderr == "", again.stderr


def test_a_misspelt_variable_is_named_with_the_setting_it_resembles(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # THRIFTGATE_ADMINKEY or THRIFTGATE_DATABASE were ignored in silence: no dashboard, or the
    # tenants created in ./thriftgate.db instead of the Postgres database meant
    assert cli("migrate", env=env).returncode == 0
    out = cli("tenant", "list", env={**env, "THRIFTGATE_ADMINKEY": "s3cret-admin-key-value"})
    assert out.returncode == 0, out.stderr
    assert one_line(out) == (
        "warning: THRIFTGATE_ADMINKEY is not a thriftgate setting "
        "(did you mean THRIFTGATE_ADMIN_KEY?); it is ignored"
    )
    assert "s3cret" not in out.stderr
    quiet = cli("tenant", "list", env={**env, "THRIFTGATE_CONFIG_FILE": "x.yaml"})  # compose's
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_alert_settings_without_the_webhook_are_named(env: dict[str, str]) -> None:
    assert cli("migrate", env=env).returncode == 0
    alone = {**env, "THRIFTGATE_BUDGET_ALERT_SECRET": "whsec-s3cret"}
    out = cli("tenant", "list", env=alone)
    assert out.returncode == 0, out.stderr
    assert one_line(out) == (
        "warning: THRIFTGATE_BUDGET_ALERT_SECRET set without "
        "THRIFTGATE_BUDGET_ALERT_WEBHOOK_URL: no budget alert is sent"
    )
    assert "s3cret" not in out.stderr
    hooked = cli(
        "tenant", "list", env={**alone, "THRIFTGATE_BUDGET_ALERT_WEBHOOK_URL": "https://h/x"}
    )
    assert hooked.returncode == 0 and hooked.stderr == "", hooked.stderr


def test_a_cache_model_directory_that_cannot_be_made_is_one_line(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # The semantic cache exports its embedding model there once: a directory that cannot be
    # created was a 74-line traceback from the app's start-up, exit 3
    out = cli(
        "serve", "--port", "1",
        env={**env, "THRIFTGATE_CACHE_MODEL_DIR": "/proc/thriftgate-models"},
    )  # fmt: skip
    line = one_line(out)
    assert out.returncode == 2
    assert line.startswith("error: THRIFTGATE_CACHE_MODEL_DIR '/proc/thriftgate-models': "), line
    assert not (tmp_path / "s.db").exists()
