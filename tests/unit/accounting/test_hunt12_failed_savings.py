"""A request that failed claims no saving, whatever it was billed (hardening round 11).

A client that gets an error retries (the SDKs do, twice by default), and the retry that
succeeds claims the whole counterfactual: a saving booked on the failed attempt too counts the
same work twice. The failed attempt's cost is what it cost; its counterfactual is that cost.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.pipeline.account import AccountStage
from gateway.pipeline.context import Usage
from gateway.routing.catalog import Catalog
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context


def routed_group() -> tuple[AccountStage, Catalog]:
    """A dear default (the baseline) and a cheap deployment the router prefers."""
    catalog = Catalog.build(
        [
            DeploymentConfig(
                name="dear", model="m", default=True,
                input_cost_per_mtok=Decimal("2.5"), output_cost_per_mtok=Decimal(10),
            ),
            DeploymentConfig(
                name="cheap", model="m",
                input_cost_per_mtok=Decimal("0.25"), output_cost_per_mtok=Decimal(1),
            ),
        ]
    )  # fmt: skip
    return AccountStage(catalog, None, None), catalog  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (502, "upstream_error"),  # the stream broke after its first byte
        (504, "upstream_timeout"),  # the prompt went upstream, no answer came
        (499, "client_disconnected"),  # the client hung up mid-stream
    ],
)
def test_a_failed_request_that_was_billed_claims_no_saving(status: int, code: str) -> None:
    account, catalog = routed_group()
    ctx = bare_context(deployment=catalog.deployments["cheap"])
    # compressed too: 1,000 tokens cut before it was sent
    ctx.prompt_tokens_original, ctx.prompt_tokens_compressed = 1400, 400
    ctx.usage = Usage(prompt_tokens=400, completion_tokens=8, source="tiktoken")
    ctx.status_code, ctx.error_code = status, code
    account._price(ctx)
    assert ctx.cost_usd == Decimal("0.000108")  # 400 x 0.25 + 8 x 1, per million: billed
    assert ctx.savings.total_usd == 0
    assert ctx.savings.routing_usd == ctx.savings.compression_usd == 0
    assert ctx.counterfactual_cost_usd == ctx.cost_usd


def test_a_cache_hit_cut_short_claims_no_saving() -> None:
    """A replayed stream the client hung up on: it pays nothing and saved nothing."""
    account, _ = routed_group()
    ctx = bare_context(cache_status="hit-exact")
    ctx.usage = Usage(prompt_tokens=10, completion_tokens=8, source="cache")
    ctx.status_code, ctx.error_code = 499, "client_disconnected"
    account._price(ctx)
    assert ctx.cost_usd == ctx.counterfactual_cost_usd == ctx.savings.total_usd == 0


def test_a_request_that_succeeded_still_claims_its_savings() -> None:
    account, catalog = routed_group()
    ctx = bare_context(deployment=catalog.deployments["cheap"])
    ctx.usage = Usage(prompt_tokens=400, completion_tokens=8)
    account._price(ctx)
    assert ctx.savings.routing_usd == Decimal("0.00108") - Decimal("0.000108")
    assert ctx.cost_usd + ctx.savings.total_usd == ctx.counterfactual_cost_usd
