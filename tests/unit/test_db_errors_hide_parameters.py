"""A failed statement's error text must not carry its parameters (prompts, answers, key
hashes): the outage loggers write the first failure's traceback at WARNING."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from gateway.db.session import create_engine


async def test_a_failed_statement_does_not_show_its_parameters(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (v TEXT NOT NULL UNIQUE)"))
            await conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": "PRIVATE PROMPT"})
        with pytest.raises(DBAPIError) as info:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": "PRIVATE PROMPT"})
        assert "PRIVATE PROMPT" not in str(info.value)
    finally:
        await engine.dispose()
