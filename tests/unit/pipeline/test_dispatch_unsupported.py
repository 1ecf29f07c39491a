"""Dispatch over a group where one deployment cannot serve a request (400 unsupported_parameter,
as the local engine answers tools or logprobs): the next one serves it, no breaker counts it."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from gateway.errors import InvalidRequest
from gateway.pipeline.dispatch import Dispatcher
from gateway.routing.catalog import Catalog, Deployment
from gateway.routing.router import Router
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context
from tests.unit.pipeline.fakes import Providers

REPLY = {"choices": [{"finish_reason": "stop"}], "usage": {"completion_tokens": 3}}


class Provider:
    """Answers REPLY, or refuses every request as a deployment that cannot serve it."""

    def __init__(self, refuses: bool) -> None:
        self.refuses = refuses
        self.calls = 0

    async def complete(self, body: Any, dep: Deployment, **_: Any) -> dict[str, Any]:
        self.calls += 1
        if self.refuses:
            raise InvalidRequest("no tools here", param="tools", code="unsupported_parameter")
        return REPLY


def router(*names: str) -> Router:
    # priced in the order given: the first is the cheapest, so it is tried first
    configs = [
        DeploymentConfig(
            name=name,
            model="m",
            input_cost_per_mtok=Decimal(i),
            output_cost_per_mtok=Decimal(i),
        )
        for i, name in enumerate(names)
    ]
    return Router(Catalog.build(configs))


def dispatch(route: Router, providers: dict[str, Provider]) -> tuple[Any, list[str]]:
    ctx = bare_context(body={"tools": [{"type": "function"}]})
    ctx.route_plan = route.plan("m", prompt_tokens=10)
    ctx.candidates = [c.deployment for c in ctx.route_plan.ranked]
    dispatcher = Dispatcher(Providers(providers), route)  # type: ignore[arg-type]
    return asyncio.run(dispatcher.dispatch(ctx)), ctx.attempts


def test_the_next_deployment_serves_what_the_first_cannot() -> None:
    route = router("local", "cloud")
    reply, attempts = dispatch(route, {"local": Provider(True), "cloud": Provider(False)})
    assert reply.body == REPLY
    assert attempts == ["local", "cloud"]
    assert route.breakers["local"].consecutive_failures == 0


def test_the_400_goes_back_when_no_deployment_can_serve_it() -> None:
    route = router("local", "other-local")
    refusers = {"local": Provider(True), "other-local": Provider(True)}
    with pytest.raises(InvalidRequest) as err:
        dispatch(route, refusers)
    assert err.value.code == "unsupported_parameter" and err.value.param == "tools"
    assert [p.calls for p in refusers.values()] == [1, 1]
    assert all(b.consecutive_failures == 0 for b in route.breakers.values())


class TooLong(Provider):
    """A deployment whose context is too small for this request (a 2k-token local engine)."""

    async def complete(self, body: Any, dep: Deployment, **_: Any) -> dict[str, Any]:
        self.calls += 1
        if self.refuses:
            raise InvalidRequest(
                "the prompt has 3000 tokens; this model takes at most 2047",
                param="messages",
                code="context_length_exceeded",
            )
        return REPLY


def test_a_context_too_small_falls_back_to_a_larger_one() -> None:
    route = router("local", "cloud")
    reply, attempts = dispatch(route, {"local": TooLong(True), "cloud": TooLong(False)})
    assert reply.body == REPLY and attempts == ["local", "cloud"]
    assert route.breakers["local"].consecutive_failures == 0


def test_context_length_exceeded_goes_back_when_no_deployment_takes_it() -> None:
    route = router("local", "other-local")
    with pytest.raises(InvalidRequest) as err:
        dispatch(route, {"local": TooLong(True), "other-local": TooLong(True)})
    assert err.value.code == "context_length_exceeded"
