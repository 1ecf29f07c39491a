from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from gateway.routing.catalog import Catalog
from gateway.settings import DeploymentConfig

MakeCatalog = Callable[..., Catalog]


def _dep_config(
    name: str, model: str = "llama", inp: str = "1", out: str = "2", **kw: Any
) -> DeploymentConfig:
    return DeploymentConfig(
        name=name,
        model=model,
        input_cost_per_mtok=Decimal(inp),
        output_cost_per_mtok=Decimal(out),
        **kw,
    )


DepConfig = Callable[..., DeploymentConfig]


@pytest.fixture
def dep_config() -> DepConfig:
    return _dep_config


@pytest.fixture
def make_catalog() -> MakeCatalog:
    def build(*configs: DeploymentConfig) -> Catalog:
        return Catalog.build(configs)

    return build
