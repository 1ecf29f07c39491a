"""Observed latency percentiles on SQLite, the embedded default (no percentile_cont there)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.dashboard.deployments import latency_percentiles, percentile_cont
from gateway.dashboard.windows import Window
from gateway.db.models import Base, UsageLedger


def test_percentile_cont_interpolates_like_postgres() -> None:
    assert percentile_cont([10.0], 0.95) == 10.0
    assert percentile_cont([10.0, 20.0, 30.0, 40.0], 0.5) == 25.0
    assert percentile_cont([float(v) for v in range(1, 101)], 0.95) == pytest.approx(95.05)


async def test_sqlite_reports_observed_percentiles(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        rows = [
            {
                "id": uuid.uuid4().hex,
                "request_id": f"r{i}",
                "tenant_id": "t",
                "model": "m",
                "deployment": "local",
                "status_code": 200,
                "latency_ms": float(ms),
                "cache_status": "miss",
                "created_at": now - timedelta(minutes=5),
            }
            for i, ms in enumerate(range(100, 1100, 100))  # 100 .. 1000 ms
        ]
        rows.append({**rows[0], "id": uuid.uuid4().hex, "latency_ms": 9e9, "status_code": 502})
        hit = {**rows[0], "id": uuid.uuid4().hex, "latency_ms": 1.0, "cache_status": "hit-exact"}
        rows.append(hit)
        await conn.execute(insert(UsageLedger), rows)
    window = Window(name="24h", unit="hour", since=now - timedelta(hours=24), now=now)
    try:
        got = await latency_percentiles(engine, window)
    finally:
        await engine.dispose()
    # failed requests and cache hits are left out, as on Postgres
    assert got.keys() == {"local"}
    assert got["local"] == pytest.approx((550.0, 955.0))
