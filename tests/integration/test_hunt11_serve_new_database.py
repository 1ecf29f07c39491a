"""`thriftgate serve` that creates the embedded default's database says where, as the admin
commands do (README, "First request": "a command that creates a new one says so")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import free_port

pytestmark = pytest.mark.integration


def test_serve_that_creates_the_database_says_where(tmp_path: Path) -> None:
    # `tenant create demo` in the repository, then `thriftgate serve` started from another
    # directory: the gateway made a new ./thriftgate.db there in silence, logged "no tenants
    # yet", and every key created a minute ago was "Incorrect API key provided".
    elsewhere = tmp_path / "other-dir"
    elsewhere.mkdir()
    config = tmp_path / "gw.yaml"
    config.write_text("deployments: []\n")  # nothing to load: the start-up alone is tested
    env = {k: v for k, v in os.environ.items() if not k.startswith("THRIFTGATE_")}
    env["THRIFTGATE_CONFIG"] = str(config)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", str(free_port())],
        cwd=elsewhere, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # up to the start-up's end: the note comes before it
            lines.append(line)
            if line.startswith("note: ") or "Application startup complete" in line:
                break
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    notes = [line for line in lines if line.startswith("note: created a new database ")]
    assert notes, "".join(lines)[-3000:]
    assert str(elsewhere / "thriftgate.db") in notes[0]
    assert "THRIFTGATE_DATABASE_URL" in notes[0]
