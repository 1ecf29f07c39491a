"""Which answers' `usage.energy_joules` reaches the ledger row: local engines' only, sane only."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from gateway.pipeline.account import energy_of, ledger_row
from gateway.pipeline.context import RequestContext
from gateway.routing.catalog import Catalog, Deployment
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context


def dep(name: str, **fields: Any) -> Deployment:
    cfg = DeploymentConfig(
        name=name,
        model="m",
        input_cost_per_mtok=Decimal(0),
        output_cost_per_mtok=Decimal(0),
        **fields,
    )
    return Catalog.build([cfg]).deployments[name]


IN_PROCESS = dep("local", provider="local")
OVER_HTTP = dep("engine-http", api_base="http://engine:8100/v1", hardware_usd_per_hour=1)
CLOUD = dep("cloud", api_base="https://api.example.com/v1")


def ctx(deployment: Deployment | None, cache_status: str = "miss") -> RequestContext:
    c = bare_context()
    c.deployment = deployment
    c.cache_status = cache_status
    return c


def body(joules: Any) -> dict[str, Any]:
    return {"usage": {"prompt_tokens": 3, "completion_tokens": 2, "energy_joules": joules}}


@pytest.mark.parametrize("deployment", [IN_PROCESS, OVER_HTTP])
def test_local_engines_energy_is_read(deployment: Deployment) -> None:
    assert energy_of(ctx(deployment), body(12.5)) == 12.5
    assert energy_of(ctx(deployment), body(3)) == 3.0


def test_cloud_answers_cache_hits_and_missing_fields_give_null() -> None:
    assert energy_of(ctx(CLOUD), body(12.5)) is None  # not ours: never trusted
    assert energy_of(ctx(IN_PROCESS, "hit-exact"), body(12.5)) is None  # a replay used none
    assert energy_of(ctx(None), body(12.5)) is None
    no_field = {"usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    assert energy_of(ctx(IN_PROCESS), no_field) is None  # a CPU host: not measured
    assert energy_of(ctx(IN_PROCESS), None) is None


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), 1e12, True, "5", None])
def test_nonsense_energy_is_not_recorded(bad: Any) -> None:
    assert energy_of(ctx(OVER_HTTP), body(bad)) is None


def test_the_ledger_row_carries_it() -> None:
    c = ctx(IN_PROCESS)
    assert ledger_row(c)["energy_joules"] is None
    c.energy_joules = energy_of(c, body(7.25))
    assert ledger_row(c)["energy_joules"] == 7.25
