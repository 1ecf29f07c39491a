"""LocalProvider tells whether a deployment's engine is still to load, and can load it ahead."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.providers import local
from gateway.routing.catalog import Catalog
from gateway.settings import DeploymentConfig


class Backend:
    started = 0

    def __init__(self, *_: Any) -> None:
        pass

    async def start(self) -> None:
        await asyncio.sleep(0)
        Backend.started += 1

    async def aclose(self) -> None:
        pass


def test_preload_loads_the_engine_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "create_backend", Backend)
    dep = Catalog.build([DeploymentConfig(name="smol", model="m", provider="local")]).deployments[
        "smol"
    ]

    async def run() -> None:
        provider = local.LocalProvider()
        assert provider.loading(dep)
        provider.preload([dep])
        for _ in range(5):
            await asyncio.sleep(0)
        assert not provider.loading(dep) and Backend.started == 1
        await provider.engine(dep)  # already there: no second load
        assert Backend.started == 1
        await provider.aclose()

    asyncio.run(run())
