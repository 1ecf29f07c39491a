"""RouterStatsStore round trip on SQLite (the embedded default); Postgres is covered by the
integration test that restarts a gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

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
        _learn_b(learned, times=1)
        assert await store.save() == 2  # an upsert, not a duplicate (b and the model changed)
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


def _learn_b(router: Router, ttft_ms: float = 150.0, times: int = 20) -> None:
    b = router.catalog.deployments["b"]
    for _ in range(times):
        cand = router.plan("llama", prompt_tokens=100, deployments=[b]).ranked[0]
        flight = router.start(cand, model="llama", prompt_tokens=100, stream=True)
        assert flight is not None
        router.first_token(flight, ttft_ms)
        router.succeed(flight, completion_tokens=40, total_ms=ttft_ms + 400.0)


async def test_a_worker_that_learned_nothing_does_not_overwrite_one_that_did(
    tmp_path: Path, make_catalog: Any, dep_config: Any
) -> None:
    """With several workers every one saves every interval (last writer wins). A worker that
    saw no traffic for a deployment wrote back what it loaded at start, over what the busy
    worker had learned, so a restart came back with the old figures (or the config's hints)."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'workers.db'}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: DeploymentStat.__table__.create(c))
        busy, idle = _router(make_catalog, dep_config), _router(make_catalog, dep_config)
        busy_store, idle_store = RouterStatsStore(engine, busy), RouterStatsStore(engine, idle)
        assert await busy_store.load() == 0 and await idle_store.load() == 0
        _learn_b(busy)
        assert await busy_store.save() == 2  # b and the model's lengths: a learned nothing
        assert await idle_store.save() == 0  # nothing new here: nothing to write over it
        restarted = _router(make_catalog, dep_config)
        restarted_store = RouterStatsStore(engine, restarted)
        assert await restarted_store.load() == 2
        assert await restarted_store.save() == 0  # what it loaded is not news either
        chosen = restarted.plan("llama", prompt_tokens=100, slo_ms=300, stream=True).chosen
        assert chosen is not None and chosen.name == "b"  # warm: b was learned fast
        assert await busy_store.save() == 0  # unchanged since its last save
        _learn_b(busy, times=1)
        assert await busy_store.save() == 2
    finally:
        await engine.dispose()


class _Clock:
    """One wall clock and one monotonic clock for routers standing in for processes."""

    def __init__(self) -> None:
        self.t = 1_000.0

    def mono(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1.7e9 + self.t


def _clocked_router(make_catalog: Any, dep_config: Any, clock: _Clock) -> Router:
    return Router(
        make_catalog(
            dep_config("a", ttft_ms=100, ms_per_token=5, default=True),
            dep_config("b", inp="0.5", out="1", ttft_ms=100, ms_per_token=30),
        ),
        clock=clock.mono,
        wall_clock=clock.wall,
    )


async def _rows(engine: Any) -> list[str]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(DeploymentStat.deployment))).all()
    return sorted(row for (row,) in rows)


async def test_two_replicas_learning_one_deployment_are_merged_not_overwritten(
    tmp_path: Path, make_catalog: Any, dep_config: Any
) -> None:
    """Two processes on one database each learn `b`: one saw it fast once, the other then saw
    it slow twenty times. When they shared one row, whichever saved last was all a restart got:
    here the one that saw a single fast answer, so the restarted router sent a 300 ms stream to
    `b`, which now takes 900 ms. Each process now keeps its row and a restart merges them."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'replicas.db'}")
    clock = _Clock()
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: DeploymentStat.__table__.create(c))
        one = _clocked_router(make_catalog, dep_config, clock)
        two = _clocked_router(make_catalog, dep_config, clock)
        one_store, two_store = RouterStatsStore(engine, one), RouterStatsStore(engine, two)
        assert await one_store.load() == 0 and await two_store.load() == 0
        _learn_b(two, ttft_ms=90.0, times=1)  # the second replica sees b fast, once
        clock.t += 5
        _learn_b(one, ttft_ms=900.0, times=20)  # then b slows down; the first sees it 20 times
        assert await one_store.save() == 2
        assert await two_store.save() == 2  # the last writer
        restarted = _clocked_router(make_catalog, dep_config, clock)
        assert await RouterStatsStore(engine, restarted).load() == 2
        plan = restarted.plan("llama", prompt_tokens=100, slo_ms=300, stream=True)
        assert plan.chosen is not None and plan.chosen.name == "a"
        b = next(c for c in plan.ranked if c.name == "b")
        assert b.latency.ttft_ms > 700  # mostly the busy, recent replica's 900 ms
        assert restarted.latency["b"].samples == 21
        assert restarted.lengths["llama"].count == 21  # both replicas' answers
    finally:
        await engine.dispose()


async def test_a_process_that_writes_a_key_retires_the_rows_it_merged(
    tmp_path: Path, make_catalog: Any, dep_config: Any
) -> None:
    """Rows do not pile up with restarts: once a process saves a key, the rows it merged for
    it at start (its own row stands for them) are deleted, unless another wrote them since."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'retire.db'}")
    clock = _Clock()
    try:
        earlier = _clocked_router(make_catalog, dep_config, clock)
        _learn_b(earlier, times=4)
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: DeploymentStat.__table__.create(c))
            await conn.execute(  # a row of the time when every process wrote `dep:b`
                DeploymentStat.__table__.insert().values(
                    deployment="dep:b", stats=earlier.snapshot()["dep:b"]
                )
            )
        one = _clocked_router(make_catalog, dep_config, clock)
        two = _clocked_router(make_catalog, dep_config, clock)
        one_store = RouterStatsStore(engine, one, replica_id="a" * 12)
        two_store = RouterStatsStore(engine, two, replica_id="b" * 12)
        await one_store.load()
        await two_store.load()
        _learn_b(one, times=3)
        _learn_b(two, times=2)
        await one_store.save()
        await two_store.save()
        assert await _rows(engine) == [
            f"dep:b#{'a' * 12}", f"dep:b#{'b' * 12}", f"model:llama#{'a' * 12}",
            f"model:llama#{'b' * 12}",
        ]  # fmt: skip
        third = _clocked_router(make_catalog, dep_config, clock)
        third_store = RouterStatsStore(engine, third, replica_id="c" * 12)
        assert await third_store.load() == 2
        # the old row's 4 went into both rows that merged it: the merged window holds them twice
        assert third.latency["b"].samples == (4 + 3) + (4 + 2)
        _learn_b(two, times=1)
        await two_store.save()  # written since the third merged it: it stays
        _learn_b(third, times=1)
        await third_store.save()
        assert await _rows(engine) == [
            f"dep:b#{'b' * 12}", f"dep:b#{'c' * 12}", f"model:llama#{'b' * 12}",
            f"model:llama#{'c' * 12}",
        ]  # fmt: skip
    finally:
        await engine.dispose()


async def test_a_deployment_with_a_long_name_is_restored_and_its_rows_retired(
    tmp_path: Path, make_catalog: Any, dep_config: Any
) -> None:
    """A key cut to fit the column with its replica id (`dep:` and a 190-character name) was
    loaded under the cut key, which no deployment has: the learning was never restored, and the
    rows it merged were never retired, one more row at every process start."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'long.db'}")
    name = "azure-" + "x" * 184  # 190 characters: a name may have 200

    def router() -> Router:
        return Router(make_catalog(dep_config(name, ttft_ms=900, ms_per_token=30, default=True)))

    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: DeploymentStat.__table__.create(c))
        learned = router()
        dep = learned.catalog.deployments[name]
        for _ in range(20):
            cand = learned.plan("llama", prompt_tokens=100, deployments=[dep]).ranked[0]
            flight = learned.start(cand, model="llama", prompt_tokens=100, stream=True)
            assert flight is not None
            learned.first_token(flight, 150.0)
            learned.succeed(flight, completion_tokens=40, total_ms=550.0)
        assert await RouterStatsStore(engine, learned, replica_id="a" * 12).save() == 2
        fresh = router()
        store = RouterStatsStore(engine, fresh, replica_id="b" * 12)
        assert await store.load() == 2  # the deployment and its model
        assert fresh.latency[name].samples == learned.latency[name].samples
        cand = fresh.plan("llama", prompt_tokens=100, deployments=[dep]).ranked[0]
        flight = fresh.start(cand, model="llama", prompt_tokens=100, stream=True)
        assert flight is not None
        fresh.first_token(flight, 150.0)
        fresh.succeed(flight, completion_tokens=40, total_ms=550.0)
        await store.save()
        rows = [r for r in await _rows(engine) if r.startswith("dep:")]
        assert len(rows) == 1 and rows[0].endswith("#" + "b" * 12), rows  # the old one retired
    finally:
        await engine.dispose()
