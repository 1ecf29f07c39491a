"""After a fallback, x-thriftgate-predicted-latency-ms is the prediction for the deployment that
serves the request: it kept the failed first choice's, next to the new deployment's name."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from gateway.errors import UpstreamError
from gateway.pipeline.dispatch import Dispatcher
from gateway.pipeline.route import RouteStage
from gateway.routing.catalog import Catalog, Deployment
from gateway.routing.router import Router
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context
from tests.unit.pipeline.fakes import Providers

REPLY = {"choices": [{"finish_reason": "stop"}], "usage": {"completion_tokens": 3}}
HEADER = "x-thriftgate-predicted-latency-ms"


class Provider:
    def __init__(self, fails: bool) -> None:
        self.fails = fails

    async def complete(self, body: Any, dep: Deployment, **_: Any) -> dict[str, Any]:
        if self.fails:
            raise UpstreamError("upstream is down", upstream_status=503)
        return REPLY


def config(name: str, price: int, ttft_ms: float, ms_per_token: float) -> DeploymentConfig:
    return DeploymentConfig(
        name=name,
        model="m",
        input_cost_per_mtok=Decimal(price),
        output_cost_per_mtok=Decimal(price),
        ttft_ms=ttft_ms,
        ms_per_token=ms_per_token,
    )


def test_the_predicted_latency_is_the_serving_deployments() -> None:
    # the cheap, slow one is the first choice; it fails and the fast one serves
    router = Router(Catalog.build([config("slow", 1, 800, 30), config("fast", 2, 100, 5)]))
    ctx = bare_context(body={"max_tokens": 50})
    ctx.candidates = list(router.catalog.group("m"))
    asyncio.run(RouteStage(router).before(ctx))
    assert ctx.route_plan is not None
    slow, fast = (round(c.latency.expected_ms(False), 1) for c in ctx.route_plan.ranked)
    assert [c.name for c in ctx.route_plan.ranked] == ["slow", "fast"] and slow != fast
    assert ctx.extra_headers[HEADER] == f"{slow:g}"  # the route stage's: the first choice's
    providers = Providers({"slow": Provider(True), "fast": Provider(False)})
    reply = asyncio.run(Dispatcher(providers, router).dispatch(ctx))  # type: ignore[arg-type]
    assert reply.body == REPLY and ctx.attempts == ["slow", "fast"]
    assert ctx.extra_headers["x-thriftgate-route-reason"] == "fallback-after-503"
    assert ctx.extra_headers[HEADER] == f"{fast:g}" and ctx.predicted_latency_ms == fast
