"""/metrics and the ledger agree on savings when one is negative (hardening round 11).

A request that `thriftgate/auto` or a fallback served on a deployment dearer than the baseline
records a negative routing saving (README). `thriftgate_saved_usd` is a counter, which cannot
go down: it dropped such amounts, so its routing total read more than the ledger's sum. The
amount goes to `thriftgate_overspent_usd` instead: saved - overspent = the ledger's sum.
"""

from __future__ import annotations

from decimal import Decimal

from gateway.metrics import GatewayMetrics
from gateway.pipeline.account import AccountStage
from gateway.pipeline.context import Usage
from gateway.routing.catalog import Catalog
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context


def sample(metrics: GatewayMetrics, name: str, technique: str) -> float:
    value = metrics.registry.get_sample_value(name, {"tenant": "t", "technique": technique})
    return value or 0.0


def test_a_negative_routing_saving_is_counted_as_overspent() -> None:
    catalog = Catalog.build(
        [
            DeploymentConfig(
                name="base", model="m", default=True,
                input_cost_per_mtok=Decimal(1), output_cost_per_mtok=Decimal(1),
            ),
            DeploymentConfig(
                name="dear", model="m",
                input_cost_per_mtok=Decimal(4), output_cost_per_mtok=Decimal(4),
            ),
        ]
    )  # fmt: skip
    metrics = GatewayMetrics()
    account = AccountStage(catalog, None, metrics)  # type: ignore[arg-type]
    ledger = Decimal(0)
    for dep in ("base", "dear", "dear"):  # a fallback twice lands on the dearer one
        ctx = bare_context(deployment=catalog.deployments[dep])
        ctx.usage = Usage(prompt_tokens=500_000, completion_tokens=0)
        account._price(ctx)
        account._observe(ctx)
        ledger += ctx.savings.routing_usd
    assert ledger == Decimal(-3)  # 0, then -1.5 twice
    saved = sample(metrics, "thriftgate_saved_usd_total", "routing")
    overspent = sample(metrics, "thriftgate_overspent_usd_total", "routing")
    assert (saved, overspent) == (0.0, 3.0)
    assert Decimal(str(saved - overspent)) == ledger
