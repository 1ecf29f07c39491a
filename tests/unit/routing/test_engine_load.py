"""Local engine load reports: parsing its /metrics, and polling a real HTTP endpoint."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from aiohttp import web

from gateway.routing.engine_load import EngineLoadWatcher, parse_engine_metrics
from gateway.routing.router import Router

EXPOSITION = """\
# HELP thriftgate_engine_queue_depth Requests waiting to start.
# TYPE thriftgate_engine_queue_depth gauge
thriftgate_engine_queue_depth{backend="transformers",model="smol"} 3.0
# HELP thriftgate_engine_running_requests Requests being decoded.
# TYPE thriftgate_engine_running_requests gauge
thriftgate_engine_running_requests{backend="transformers",model="smol"} 4.0
# HELP thriftgate_engine_tokens_per_second Generated tokens per busy second (recent window).
# TYPE thriftgate_engine_tokens_per_second gauge
thriftgate_engine_tokens_per_second{backend="transformers",model="smol"} 120.0
"""


def test_parse_engine_metrics() -> None:
    load = parse_engine_metrics(EXPOSITION, observed_at=5.0)
    assert load is not None
    assert (load.queue_depth, load.running, load.decode_tokens_per_s) == (3, 4, 120.0)
    assert parse_engine_metrics("# nothing here\n", 0.0) is None


async def test_watcher_polls_an_engine_over_http(
    make_catalog: Any, dep_config: Any, unused_tcp_port: int
) -> None:
    app = web.Application()

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=EXPOSITION)

    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", unused_tcp_port)
    await site.start()
    try:
        catalog = make_catalog(
            dep_config("cloud", default=True),
            dep_config(
                "engine",
                inp="0",
                out="0",
                api_base=f"http://127.0.0.1:{unused_tcp_port}/v1",
                hardware_usd_per_hour=Decimal("1.8"),
                max_concurrency=8,
            ),
        )
        router = Router(catalog)
        watcher = EngineLoadWatcher(router)
        assert watcher.watch(catalog.deployments.values(), lambda d: None) == 1
        assert await watcher.poll_once() == 1
        load = router.current_load("engine", router.clock())
        assert (load.queue_depth, load.running) == (3, 4)
        # 120 tok/s over 4 sequences = 30 tok/s each, learned for that load level
        assert router.local["engine"].per_sequence_tokens_per_s(4) == 30.0
        await watcher.aclose()
    finally:
        await runner.cleanup()
