"""The in-process local engine is told whose request it serves (the tenant), so it can queue
tenants fairly (local_engine/backends/fair_queue.py); before, every request reached it as
nobody's and one tenant's flood held all of its slots."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from gateway.pipeline.dispatch import Dispatcher
from gateway.providers.local import LocalProvider
from gateway.routing.catalog import Catalog
from gateway.routing.router import Router
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context
from tests.unit.pipeline.fakes import Providers

REPLY = {"choices": [{"message": {"role": "assistant", "content": "hi"}}], "usage": None}


class Backend:
    """Records the owner each request was submitted for."""

    def __init__(self) -> None:
        self.owners: list[str] = []

    async def complete(self, endpoint: str, body: Any, owner: str = "") -> Any:
        self.owners.append(owner)
        return REPLY

    async def stream(self, endpoint: str, body: Any, owner: str = "") -> AsyncGenerator[Any]:
        self.owners.append(owner)
        yield {"choices": [{"delta": {"content": "hi"}}]}


def serve(stream: bool) -> list[str]:
    route = Router(Catalog.build([DeploymentConfig(name="local", model="m", provider="local")]))
    provider = LocalProvider()
    backend = Backend()
    provider._engines["local"] = backend  # type: ignore[assignment]  # started already
    ctx = bare_context(body={"messages": [{"role": "user", "content": "hi"}]})
    ctx.stream = stream
    ctx.route_plan = route.plan("m", prompt_tokens=10)
    ctx.candidates = [c.deployment for c in ctx.route_plan.ranked]

    async def go() -> None:
        reply = await Dispatcher(Providers({"local": provider}), route).dispatch(ctx)
        if reply.chunks is not None:
            async for _ in reply.chunks:
                pass

    asyncio.run(go())
    return backend.owners


def test_a_request_reaches_the_local_engine_as_its_tenants() -> None:
    assert serve(stream=False) == ["t"]


def test_a_stream_reaches_the_local_engine_as_its_tenants() -> None:
    assert serve(stream=True) == ["t"]
