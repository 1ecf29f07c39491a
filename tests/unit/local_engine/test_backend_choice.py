"""`thriftgate engine serve --backend auto`: vLLM wherever it is installed, else transformers."""

import importlib.util
import sys
from pathlib import Path

from local_engine.cli import resolve_backend


def test_explicit_backends_are_kept():
    assert resolve_backend("transformers", None) == "transformers"
    assert resolve_backend("vllm", None) == "vllm"


def test_auto_uses_a_given_vllm_environment(tmp_path: Path):
    assert resolve_backend("auto", Path(sys.executable)) == "vllm"


def test_auto_follows_what_is_installed_here(tmp_path: Path):
    expected = "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"
    assert resolve_backend("auto", None) == expected
    assert resolve_backend("auto", tmp_path / "missing" / "python") == expected
