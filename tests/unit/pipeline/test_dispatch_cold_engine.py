"""Dispatch to a local engine still loading its model: the answer is served, the breaker sees a
success, but the load's seconds are not learned as the deployment's latency."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from gateway.pipeline.dispatch import Dispatcher
from gateway.routing.catalog import Catalog, Deployment
from gateway.routing.router import Router
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context

REPLY = {"choices": [{"finish_reason": "stop"}], "usage": {"completion_tokens": 3}}


class ColdOnce:
    """A provider whose engine is loading for the first request only."""

    def __init__(self) -> None:
        self.loaded = False

    def loading(self, dep: Deployment) -> bool:
        return not self.loaded

    async def complete(self, body: Any, dep: Deployment, **_: Any) -> dict[str, Any]:
        self.loaded = True
        return REPLY


class Providers:
    def __init__(self, provider: ColdOnce) -> None:
        self.provider = provider

    def for_deployment(self, dep: Deployment) -> ColdOnce:
        return self.provider


def test_the_cold_attempt_is_not_learned_the_warm_one_is() -> None:
    route = Router(
        Catalog.build(
            [
                DeploymentConfig(
                    name="local",
                    model="m",
                    input_cost_per_mtok=Decimal(0),
                    output_cost_per_mtok=Decimal(0),
                )
            ]
        )
    )
    dispatcher = Dispatcher(Providers(ColdOnce()), route)  # type: ignore[arg-type]

    def once() -> None:
        ctx = bare_context(body={})
        ctx.route_plan = route.plan("m", prompt_tokens=10)
        ctx.candidates = [c.deployment for c in ctx.route_plan.ranked]
        assert asyncio.run(dispatcher.dispatch(ctx)).body == REPLY

    once()
    assert route.latency["local"].samples == 0
    assert route.breakers["local"].consecutive_failures == 0 and route.in_flight["local"] == 0
    once()
    assert route.latency["local"].samples == 1
