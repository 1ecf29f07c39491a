"""An audio model's service tier keeps the audio prices (hunt10 h10)."""

from __future__ import annotations

from decimal import Decimal

from gateway.accounting.pricing import resolve_price
from gateway.settings import DeploymentConfig, TierPrice


def test_a_service_tier_bills_audio_tokens_at_the_audio_price() -> None:
    """A tier's price (service_tier_prices) dropped the deployment's audio prices, so an
    answer served on the priority tier billed its audio tokens at the text price (16x
    under): 1M audio prompt tokens cost $5 instead of $40."""
    cfg = DeploymentConfig(
        name="d", model="m", provider="openai", upstream_model="gpt-4o-audio-preview",
        input_cost_per_mtok=Decimal("2.5"), output_cost_per_mtok=Decimal(10),
        audio_input_cost_per_mtok=Decimal(40), audio_output_cost_per_mtok=Decimal(80),
        service_tier_prices={"priority": TierPrice(input_cost_per_mtok=Decimal(5),
                                                   output_cost_per_mtok=Decimal(20))},
    )  # fmt: skip
    price, _ = resolve_price(cfg)
    tier = price.for_tier("priority")
    million = 1_000_000
    heard = tier.cost_usd(million, 0, audio_prompt_tokens=million)
    spoken = tier.cost_usd(0, million, audio_completion_tokens=million)
    assert (heard, spoken) == (Decimal(40), Decimal(80))
    assert tier.cost_usd(million, million) == Decimal(25)  # its own text prices
