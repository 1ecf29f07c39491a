"""A request asking for OpenAI's priority tier (billed above the standard price) reserves
budget at the priority price; flex (half price) and no tier reserve at the standard one, the
dearest a request can be billed."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.accounting.pricing import resolve_price
from gateway.pipeline.context import TenantInfo
from gateway.pipeline.limits import BudgetStage
from gateway.routing.catalog import Catalog
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context
from tests.unit.pipeline.fakes import Book

CONFIG = DeploymentConfig(name="d", model="m", provider="openai", upstream_model="gpt-5")


def reserved(tier: str | None) -> Decimal:
    catalog = Catalog.build([CONFIG])
    book = Book()
    stage = BudgetStage(book, catalog, fail_open=False)  # type: ignore[arg-type]
    body: dict[str, Any] = {"model": "m", "messages": [], "max_tokens": 1000}
    if tier is not None:
        body["service_tier"] = tier
    ctx = bare_context(
        body=body,
        tenant=TenantInfo(id="t", name="t", key_id=None, budget_usd=Decimal(1)),
        candidates=list(catalog.group("m")),
    )
    asyncio.run(stage.before(ctx))
    return book.amounts[0]


def test_litellm_lists_the_tiers_of_gpt5() -> None:
    price, source = resolve_price(CONFIG)
    assert source == "litellm"
    assert price.for_tier("flex").output_per_mtok == price.output_per_mtok / 2
    assert price.for_tier("priority").output_per_mtok == price.output_per_mtok * 2
    assert price.for_tier("default") is price and price.for_tier(None) is price
    configured = CONFIG.model_copy(update={"input_cost_per_mtok": 1, "output_cost_per_mtok": 2})
    assert resolve_price(configured)[0].tiers == ()  # a configured price has no litellm tiers


def test_priority_reserves_at_its_price_and_flex_at_the_standard_one() -> None:
    standard = reserved(None)
    assert reserved("priority") == 2 * standard  # gpt-5: priority is twice the standard
    assert reserved("flex") == standard
    assert reserved("auto") == standard


def test_tier_prices_can_be_configured() -> None:
    """A deployment priced in the config (negotiated rates, a proxy litellm does not know) had
    no tiers at all: flex was billed at the standard price."""
    configured = DeploymentConfig.model_validate(
        {
            "name": "d", "model": "m", "input_cost_per_mtok": 2, "output_cost_per_mtok": 8,
            "service_tier_prices": {
                "flex": {"input_cost_per_mtok": 1, "output_cost_per_mtok": 4},
                "priority": {
                    "input_cost_per_mtok": "3.5", "output_cost_per_mtok": 14,
                    "cached_input_cost_per_mtok": "0.875",
                },
            },
        }
    )  # fmt: skip
    price, source = resolve_price(configured)
    assert source == "config"
    assert price.for_tier("flex").cost_usd(1_000_000, 1_000_000) == Decimal(5)
    assert price.for_tier("priority").cached_input_per_mtok == Decimal("0.875")
    assert price.for_tier("default") is price
    # over litellm's own tiers for gpt-5: the configured one wins, the others stay
    override = CONFIG.model_copy(update={"service_tier_prices": configured.service_tier_prices})
    litellm_price, _ = resolve_price(override)
    assert litellm_price.for_tier("flex").output_per_mtok == Decimal(4)


@pytest.mark.parametrize(
    "tier",
    [
        {"input_cost_per_mtok": -1, "output_cost_per_mtok": 1},
        {"input_cost_per_mtok": "inf", "output_cost_per_mtok": 1},
        {"input_cost_per_mtok": 1},
        {"input_cost_per_mtok": 1, "output_cost_per_mtok": 1, "discount": 0.5},
    ],
)
def test_a_bad_tier_price_is_refused(tier: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        DeploymentConfig.model_validate(
            {"name": "d", "model": "m", "service_tier_prices": {"flex": tier}}
        )
