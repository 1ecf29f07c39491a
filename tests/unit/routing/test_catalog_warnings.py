"""The start-up warning for deployments that would be billed and routed at $0."""

from __future__ import annotations

import logging

import pytest

from gateway.routing.catalog import Catalog
from gateway.settings import DeploymentConfig


def _unpriced(name: str, **kw: object) -> DeploymentConfig:
    return DeploymentConfig(
        name=name,
        model="m",
        provider="openai_compatible",
        upstream_model="no-such-model-in-any-price-map",
        api_base="http://127.0.0.1:9/v1",
        **kw,
    )


def test_an_unpriced_cloud_deployment_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.routing.catalog"):
        Catalog.build([_unpriced("cloud")])
    assert any("routed to as if free" in r.getMessage() for r in caplog.records)


def test_a_hardware_priced_deployment_is_not_called_free(caplog: pytest.LogCaptureFixture) -> None:
    # Billed and routed at its effective price (hardware $/h over measured throughput).
    with caplog.at_level(logging.WARNING, logger="gateway.routing.catalog"):
        Catalog.build([_unpriced("gpu", hardware_usd_per_hour=2.5)])
    assert not any("as if free" in r.getMessage() for r in caplog.records)
