"""A local engine whose queue is full is busy, not broken: the next deployment serves, its
breaker does not count it, and as the last answer it is a 503 `engine_overloaded` with a
Retry-After (it was a 502 upstream_error counted toward the breaker; hunt9 h4)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.errors import UpstreamOverloaded
from gateway.pipeline.dispatch import Dispatcher
from gateway.providers.local import _translate
from gateway.routing.catalog import Deployment
from gateway.routing.router import Router
from local_engine.errors import EngineOverloaded
from tests.support.context import bare_context
from tests.unit.pipeline.fakes import Providers
from tests.unit.pipeline.test_dispatch_unsupported import REPLY, router


class Busy:
    def __init__(self, busy: bool) -> None:
        self.busy = busy

    async def complete(self, body: Any, dep: Deployment, **_: Any) -> dict[str, Any]:
        if self.busy:
            raise _translate(EngineOverloaded("the queue is full (1 waiting)"), dep)
        return REPLY


def dispatch(route: Router, providers: dict[str, Busy]) -> Any:
    ctx = bare_context(body={})
    ctx.route_plan = route.plan("m", prompt_tokens=10)
    ctx.candidates = [c.deployment for c in ctx.route_plan.ranked]
    dispatcher = Dispatcher(Providers(providers), route)  # type: ignore[arg-type]
    return asyncio.run(dispatcher.dispatch(ctx))


def test_a_full_queue_falls_back_without_counting_toward_the_breaker() -> None:
    route = router("local", "cloud")
    for _ in range(8):  # more than the breaker's threshold of consecutive failures
        assert dispatch(route, {"local": Busy(True), "cloud": Busy(False)}).body == REPLY
    assert route.breakers["local"].consecutive_failures == 0
    assert route.breaker_state("local") == "closed"


def test_as_the_last_answer_it_is_a_503_with_retry_after() -> None:
    route = router("local")
    with pytest.raises(UpstreamOverloaded) as err:
        dispatch(route, {"local": Busy(True)})
    body = err.value.body()["error"]
    assert err.value.status_code == 503 and body["code"] == "engine_overloaded"
    assert err.value.headers["Retry-After"] == "1"
