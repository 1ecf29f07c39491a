"""`serve` checks, before starting, that the semantic cache can write its embedding model's
directory, only where that cache can run at all."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from gateway import cli
from gateway.cache import embedder
from gateway.settings import Settings

UNWRITABLE = Path("/proc/thriftgate-cache")  # not even root may create it


def test_an_install_without_the_embedding_runtime_needs_no_model_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Installed without the `local` extra (the Docker image's default), the semantic cache is
    off ("embedding runtime missing") and writes nothing; yet a service user whose home cannot
    be written (systemd's nobody, a root-owned home) was refused at start for that directory."""
    monkeypatch.setattr(embedder, "runtime_installed", lambda: False, raising=False)
    cli._check_cache_model_dir(Settings(cache_model_dir=UNWRITABLE))


def test_with_the_runtime_an_unwritable_model_directory_still_stops_serve(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(embedder, "runtime_installed", lambda: True, raising=False)
    with pytest.raises(typer.Exit):
        cli._check_cache_model_dir(Settings(cache_model_dir=UNWRITABLE))
