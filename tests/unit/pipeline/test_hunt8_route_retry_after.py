"""The all-breakers-open 503: its Retry-After is when the first breaker lets a request through
(its cool-down doubled by failed half-open probes), not the base cool-down."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import NoHealthyDeployment
from gateway.pipeline.route import RouteStage
from gateway.routing.catalog import Catalog
from gateway.routing.router import Router, RouterTuning
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(router: Router, name: str) -> None:
    """One failed attempt on `name` (a half-open breaker's probe when it is half-open)."""
    dep = router.catalog.deployments[name]
    plan = router.plan("m", prompt_tokens=10, deployments=[dep])
    flight = router.start(plan.ranked[0], model="m", prompt_tokens=10, stream=False)
    assert flight is not None
    router.fail(flight)


def retry_after(router: Router) -> str:
    ctx = bare_context()
    ctx.candidates = list(router.catalog.group("m"))
    with pytest.raises(NoHealthyDeployment) as info:
        asyncio.run(RouteStage(router).before(ctx))
    return info.value.headers["Retry-After"]


def test_a_failed_probe_doubles_the_retry_after() -> None:
    clock = Clock()
    configs = [DeploymentConfig(name=n, model="m") for n in ("a", "b")]
    tuning = RouterTuning(failure_threshold=1, cooldown_s=5, max_cooldown_s=30)
    router = Router(Catalog.build(configs), clock=clock, tuning=tuning)
    fail(router, "a")
    fail(router, "b")
    assert retry_after(router) == "5"  # both open, for the base cool-down
    clock.now += 5.0
    fail(router, "a")  # each half-open probe fails: 10 s more
    fail(router, "b")
    # the base cool-down (5) sent an obedient client back while both were still shut
    assert retry_after(router) == "10"
    clock.now += 6.5
    assert retry_after(router) == "4"  # 3.5 s left, rounded up


def test_an_endless_cool_down_is_a_503_not_a_500() -> None:
    """A cool-down of inf (the config now refuses it; a tuning built in code still can) made
    int(inf) raise, and the 503 a 500."""
    configs = [DeploymentConfig(name="a", model="m")]
    tuning = RouterTuning(failure_threshold=1, cooldown_s=float("inf"))
    router = Router(Catalog.build(configs), tuning=tuning)
    fail(router, "a")
    assert retry_after(router) == "86400"  # a day
