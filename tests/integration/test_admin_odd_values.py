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
