"""At THRIFTGATE_LOG_LEVEL=debug the database drivers do not log statement parameters
(aiosqlite's DEBUG logger wrote every prompt, answer and key hash it stored)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.app import app_from_env


def test_debug_logging_leaves_the_drivers_at_info(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THRIFTGATE_LOG_LEVEL", "debug")
    monkeypatch.setenv("THRIFTGATE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    root = logging.getLogger()
    saved = root.level
    try:
        root.setLevel(logging.DEBUG)  # what basicConfig(level=DEBUG) does in a fresh process
        app_from_env()
        for name in ("aiosqlite", "asyncpg", "sqlalchemy.engine"):
            assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
    finally:
        root.setLevel(saved)
