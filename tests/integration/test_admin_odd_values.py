"""An admin's odd but legitimate values for this round's commands and settings (hunt11 h117).

Real processes (`python -m gateway.cli`), a real SQLite file: every value the command refuses
is refused in one line, never a traceback.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from gateway.db.migrate import upgrade_head
from tests.support.servers import free_port


def cli(url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "THRIFTGATE_DATABASE_URL": url}
    env.pop("THRIFTGATE_LEDGER_RETENTION_DAYS", None)
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=env, capture_output=True, text=True, timeout=120, cwd=cwd,
    )  # fmt: skip


def test_db_prune_refuses_a_horizon_before_the_calendar(tmp_path: Path) -> None:
    """`--ledger-days 1000000` (or 99999999999: "keep everything, really") was a traceback
    (OverflowError from the horizon's date); it is refused as THRIFTGATE_LEDGER_RETENTION_DAYS
    is, above 36,500."""
    url = f"sqlite:///{tmp_path / 'tg.db'}"
    asyncio.run(upgrade_head(url))
    for days in ("1000000", "99999999999"):
        out = cli(url, "db", "prune", "--ledger-days", days, cwd=tmp_path)
        assert out.returncode == 2, (days, out.stderr)
        assert "Traceback" not in out.stderr and "--ledger-days" in out.stderr, out.stderr
    out = cli(url, "db", "prune", "--ledger-days", "36500", cwd=tmp_path)
    assert out.returncode == 0, out.stderr


def test_serve_says_sqlites_workers_count_rate_limits_alone(tmp_path: Path) -> None:
    """Rate limits and the cap in flight are shared through Postgres (limits_sync.py); on SQLite
    `serve --workers 2` started without a word and each worker admitted a tenant's full RPM,
    TPM and max_concurrent_requests (README: "On SQLite (one process) nothing is shared")."""
    config = tmp_path / "tg.yaml"
    config.write_text(
        "deployments:\n- {name: d, model: m, provider: openai_compatible, upstream_model: m,\n"
        "   api_base: 'http://127.0.0.1:9/v1', input_cost_per_mtok: 1, output_cost_per_mtok: 1}\n"
    )
    env = {
        **os.environ,
        "THRIFTGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'tg.db'}",
        "THRIFTGATE_CONFIG": str(config),
        "THRIFTGATE_SPOOL_DIR": str(tmp_path / "spool"),
    }
    serve = ["serve", "--port", str(free_port()), "--workers", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", *serve],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )  # fmt: skip
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # until the warning, or the workers are up without one
            seen.append(line)
            if "warning:" in line or "Application startup complete" in line:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    warning = [line for line in seen if line.startswith("warning:")]
    assert warning and "max_concurrent_requests" in warning[0], "".join(seen)
    assert "Postgres" in warning[0]


def test_tenant_update_with_nothing_to_change_says_so(tmp_path: Path) -> None:
    """`thriftgate tenant update acme` (the flag forgotten) printed the tenant, exit 0, as if
    something had changed."""
    url = f"sqlite:///{tmp_path / 'tg.db'}"
    asyncio.run(upgrade_head(url))
    assert cli(url, "tenant", "create", "acme", "--rpm", "10", cwd=tmp_path).returncode == 0
    out = cli(url, "tenant", "update", "acme", cwd=tmp_path)
    assert out.returncode == 2, out.stdout
    assert "--rpm" in out.stderr and "--max-concurrent" in out.stderr, out.stderr
