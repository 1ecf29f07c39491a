"""Start-up mistakes are one line and a non-zero exit, not a traceback (and the engine's
`--port 99999` no longer listens on whatever port that wraps to)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

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


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    return {"THRIFTGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 's.db'}"}


def test_a_directory_or_binary_config_file_is_one_line(
    tmp_path: Path, sqlite_env: dict[str, str]
) -> None:
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe bad")
    for config, message in ((tmp_path, "is a directory"), (binary, "is not UTF-8")):
        for args in (["serve", "--config", str(config)], ["tenant", "list"]):
            out = run(*args, env={**sqlite_env, "THRIFTGATE_CONFIG": str(config)})
            lines = [line for line in out.stderr.splitlines() if line.strip()]
            assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
            assert lines[0].startswith("error: config file") and message in lines[0]


def test_an_unwritable_spool_directory_is_one_line(
    tmp_path: Path, sqlite_env: dict[str, str]
) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text("deployments: []\n")
    out = run(
        "serve", "--config", str(config), "--port", "1",
        env={**sqlite_env, "THRIFTGATE_SPOOL_DIR": "/proc/thriftgate-spool"},
    )  # fmt: skip
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
    assert lines[0].startswith("error: THRIFTGATE_SPOOL_DIR '/proc/thriftgate-spool'")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dtype", "fp8"], "--dtype: Input should be"),
        (["--backend", "tpu"], "--backend: Input should be 'transformers' or 'vllm'"),
        (["--speculative", "foo"], "--speculative: Input should be"),
        (
            ["--speculative", "draft"],
            "--speculative: speculative method 'draft' needs --draft-model",
        ),
        (
            ["--backend", "vllm", "--vllm-python", "/nonexistent/python"],
            "'--vllm-python': /nonexistent/python does not exist",
        ),
        (
            ["--backend", "vllm", "--vllm-python", sys.executable],
            f"'--backend': vLLM is not installed in {sys.executable}",
        ),
    ],
)
def test_engine_serve_names_the_flag_of_a_bad_value(args: list[str], message: str) -> None:
    """Values the engine's config refuses were pydantic's report ("1 validation error for
    EngineConfig ... [type=literal_error, input_value=...] For further information visit
    https://errors.pydantic.dev/..."), naming `speculative.method` and `draft_model` instead
    of the flags; `--backend vllm` where vLLM is missing started, then died in a 20-line
    traceback ("vLLM exited with status 1")."""
    if args[-1] == sys.executable and importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed in this environment")
    out = run("engine", "serve", *args, "--port", "1", env={"COLUMNS": "400"})  # no cropping
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "errors.pydantic.dev" not in out.stderr
    flat = " ".join(re.sub("[│╭╮╰╯─]", " ", out.stderr).split())
    assert message in flat, out.stderr
