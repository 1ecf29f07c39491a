"""The gateway's log lines give their time in UTC, as the ledger, reports and dashboard do
(hunt12 h122): on a server whose TZ is not UTC they were local times with no zone
('2026-11-25 07:42:02,762' for a request the ledger says was at 12:42Z), which repeat for an
hour when daylight saving ends."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PROBE = """
import logging
from gateway.app import app_from_env
app_from_env()
logging.getLogger("thriftgate").warning("probe")
"""


@pytest.mark.parametrize("tz", ["America/New_York", "Asia/Kolkata"])
def test_log_times_are_utc_whatever_the_servers_time_zone(tmp_path: Path, tz: str) -> None:
    env = {
        **os.environ,
        "TZ": tz,
        "THRIFTGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'logs.db'}",
    }
    before = datetime.now(UTC)
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(s for s in done.stderr.splitlines() if s.endswith("thriftgate probe"))
    stamp = line.split(" ", 1)[0]
    assert stamp.endswith("Z"), line
    logged = datetime.fromisoformat(stamp[:-1]).replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= logged <= datetime.now(UTC), line
