"""RouterStatsStore round trip on SQLite (the embedded default); Postgres is covered by the
integration test that restarts a gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.db.models import DeploymentStat
from gateway.db.session import create_engine
from gateway.routing.router import Router
from gateway.routing.stats_store import RouterStatsStore


def _router(make_catalog: Any, dep_config: Any) -> Router:
    return Router(
        make_catalog(
            dep_config("a", ttft_ms=100, ms_per_token=5, default=True),
            dep_config("b", inp="0.5", out="1", ttft_ms=900, ms_per_token=30),
        )
    )


async def test_save_then_load_restores_predictions(
    tmp_path: Path, make_catalog: Any, dep_config: Any
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'stats.db'}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: DeploymentStat.__table__.create(c))
        learned = _router(make_catalog, dep_config)
        b = learned.catalog.deployments["b"]
        for _ in range(20):
            cand = learned.plan("llama", prompt_tokens=100, deployments=[b]).ranked[0]
            flight = learned.start(cand, model="llama", prompt_tokens=100, stream=True)
            assert flight is not None
            learned.first_token(flight, 150.0)
            learned.succeed(flight, completion_tokens=40, total_ms=550.0)
        store = RouterStatsStore(engine, learned)
        assert await store.save() == 3  # two deployments and one model
        assert await store.save() == 3  # an upsert, not a duplicate
        fresh = _router(make_catalog, dep_config)
        cold = fresh.plan("llama", prompt_tokens=100, slo_ms=300, stream=True).chosen
        assert cold is not None and cold.name == "a"  # the 900 ms hint misses 300 ms
        assert await RouterStatsStore(engine, fresh).load() == 3
        before = learned.plan("llama", prompt_tokens=100, slo_ms=300, stream=True)
        after = fresh.plan("llama", prompt_tokens=100, slo_ms=300, stream=True)
        assert [(c.name, c.latency) for c in after.ranked] == [
            (c.name, c.latency) for c in before.ranked
        ]
        assert after.chosen is not None and after.chosen.name == "b"  # learned: b is fast now
    finally:
        await engine.dispose()


async def test_load_without_table_starts_cold(
    tmp_path: Path, make_catalog: Any, dep_config: Any
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        assert await RouterStatsStore(engine, _router(make_catalog, dep_config)).load() == 0
    finally:
        await engine.dispose()
