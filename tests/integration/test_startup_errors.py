"""Start-up mistakes are one line and a non-zero exit, not a traceback (and the engine's
`--port 99999` no longer listens on whatever port that wraps to)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "99999"], "65535"),
        (["--port", "0"], "--port"),
        (["--hardware-usd-per-hour", "abc"], "'abc' is not a number"),
        (["--hardware-usd-per-hour", "-1"], ">= 0"),
        (["--model", "/nonexistent/model"], "not a local Hugging Face model folder"),
        (["--speculative", "draft", "--draft-model", "/nonexistent"], "--draft-model"),
    ],
)
def test_engine_serve_refuses_bad_flags_before_starting(args: list[str], message: str) -> None:
    out = run("engine", "serve", *args)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    flat = " ".join(re.sub("[│╭╮╰╯─]", " ", out.stderr).split())  # typer boxes and wraps it
    assert message in flat, out.stderr
