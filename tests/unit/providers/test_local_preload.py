"""LocalProvider tells whether a deployment's engine is still to load, and can load it ahead."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.providers import local
from gateway.providers.registry import ProviderRegistry
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


def test_the_registry_says_a_model_is_loading_until_the_preload_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # /readyz answers 503 "starting" while this is true (gateway/api/health.py)
    release = asyncio.Event()

    class SlowBackend(Backend):
        async def start(self) -> None:
            await release.wait()

    monkeypatch.setattr(local, "create_backend", SlowBackend)
    dep = Catalog.build([DeploymentConfig(name="smol", model="m", provider="local")]).deployments[
        "smol"
    ]

    async def run() -> None:
        registry = ProviderRegistry()
        assert not registry.loading_models()  # no local provider at all
        provider = registry.for_deployment(dep)
        assert isinstance(provider, local.LocalProvider)
        provider.preload([dep])
        await asyncio.sleep(0)
        assert registry.loading_models()
        release.set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert not registry.loading_models()
        await registry.aclose()

    asyncio.run(run())
