"""Long-context prices, as litellm's cost calculator and the providers apply them: one price
for every token of a request whose prompt is longer than the threshold (hunt11 h111)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.accounting.price_map import long_context_prices
from gateway.accounting.pricing import Price, resolve_price
from gateway.pipeline.context import TenantInfo
from gateway.pipeline.limits import BudgetStage
from gateway.routing.catalog import Catalog
from gateway.settings import DeploymentConfig, LongContextPrice, TierPrice
from tests.support.context import bare_context
from tests.unit.pipeline.fakes import Book

M = 1_000_000


def litellm(provider: str, model: str) -> Price:
    price, source = resolve_price(
        DeploymentConfig(name="d", model="m", provider=provider, upstream_model=model)
    )
    assert source == "litellm"
    return price


def test_gemini_25_pro_doubles_above_200k_prompt_tokens_answer_included() -> None:
    price = litellm("gemini", "gemini-2.5-pro")
    assert price.cost_usd(200_000, M) == Decimal("0.25") + 10  # $1.25 / $10
    assert price.cost_usd(200_001, M) == Decimal("0.5000025") + 15  # $2.5 / $15
    # the threshold counts every prompt token, those read from the cache too (at $0.25)
    assert (
        price.cost_usd(300_000, 0, cached_tokens=250_000)
        == (50_000 * Decimal("2.5") + 250_000 * Decimal("0.25")) / M
    )


def test_claude_sonnet_4_cache_writes_above_200k_are_priced_as_anthropic_bills() -> None:
    """litellm lists no 1-hour write price above 200k for Sonnet 4; its calculator fell back
    to the base $6, under even the 5-minute write ($7.50). Anthropic's multipliers apply on
    top of the long-context price: 2x $6 = $12."""
    price = litellm("anthropic", "claude-sonnet-4-20250514")
    long = price.at_prompt(300_000)
    assert (long.input_per_mtok, long.output_per_mtok) == (6, Decimal("22.5"))
    assert (long.cached_input_per_mtok, long.cache_write_input_per_mtok) == (
        Decimal("0.6"),
        Decimal("7.5"),
    )
    assert long.cache_write_1h_input_per_mtok == 12
    assert price.at_prompt(200_000) is price


def test_xai_bills_the_higher_price_from_the_threshold_itself() -> None:
    price = litellm("xai", "grok-4")
    ((above, _),) = price.long_context
    assert price.at_prompt(above + 1) is not price and price.at_prompt(above) is price
    assert above + 1 in (128_000, 200_000)  # a round threshold, reached (not passed)


def test_a_service_tier_keeps_its_proportion_above_the_threshold() -> None:
    """gpt-5.4 priority ($5 / $30) above 272k: litellm lists no priority price there and fell
    back to the standard long-context one ($5 / $22.50), below priority's own base price."""
    price = litellm("openai", "gpt-5.4")
    standard = price.at_prompt(300_000)
    assert (standard.input_per_mtok, standard.output_per_mtok) == (5, Decimal("22.5"))
    priority = price.for_tier("priority").at_prompt(300_000)
    assert (priority.input_per_mtok, priority.output_per_mtok) == (10, 45)
    gemini = litellm("gemini", "gemini-2.5-pro").for_tier("priority").at_prompt(300_000)
    assert gemini.input_per_mtok == Decimal("2.5")  # listed by litellm: taken as it is


def test_a_tiered_pricing_table_prices_each_range() -> None:
    """Alibaba's qwen3-coder-plus is listed only as a table of ranges: it was priced $0."""
    price = litellm("dashscope", "qwen3-coder-plus")
    assert (price.input_per_mtok, price.output_per_mtok) == (1, 5)
    assert price.at_prompt(32_000) is price
    assert price.at_prompt(32_001).input_per_mtok == Decimal("1.8")
    assert price.at_prompt(200_000).input_per_mtok == 3


def test_configured_long_context_prices_win_over_litellm_s() -> None:
    cfg = DeploymentConfig(
        name="d", model="m", provider="gemini", upstream_model="gemini-2.5-pro",
        long_context_prices=[LongContextPrice(above_prompt_tokens=200_000,
                                              input_cost_per_mtok=Decimal(3),
                                              output_cost_per_mtok=Decimal(16))],
    )  # fmt: skip
    price, _ = resolve_price(cfg)
    long = price.at_prompt(250_000)
    assert (long.input_per_mtok, long.output_per_mtok) == (3, 16)
    assert long.cached_input_per_mtok == Decimal("0.3")  # scaled: 10% of input, as below


def test_configured_prices_have_only_the_configured_long_context_ones() -> None:
    priced = {"input_cost_per_mtok": Decimal(1), "output_cost_per_mtok": Decimal(2)}
    cfg = DeploymentConfig(
        name="d", model="m", provider="gemini", upstream_model="gemini-2.5-pro", **priced
    )
    assert resolve_price(cfg)[0].long_context == ()
    tiers = [
        {"above_prompt_tokens": 100, "input_cost_per_mtok": 3, "output_cost_per_mtok": 4},
        {"above_prompt_tokens": 10, "input_cost_per_mtok": 2, "output_cost_per_mtok": 3},
    ]
    price, source = resolve_price(cfg.model_copy(update={"long_context_prices": tuple(
        LongContextPrice.model_validate(t) for t in tiers)}))  # fmt: skip
    assert source == "config"
    assert [p.input_per_mtok for _, p in price.long_context] == [2, 3]  # ascending
    assert [price.at_prompt(n).input_per_mtok for n in (10, 11, 100, 101)] == [1, 2, 2, 3]


def test_two_prices_for_one_threshold_are_refused() -> None:
    tier = {"above_prompt_tokens": 1000, "input_cost_per_mtok": 1, "output_cost_per_mtok": 1}
    with pytest.raises(ValidationError, match="same above_prompt_tokens"):
        DeploymentConfig(name="d", model="m", long_context_prices=[tier, tier])  # type: ignore[list-item]
    with pytest.raises(ValidationError):
        DeploymentConfig(
            name="d", model="m", long_context_prices=[{**tier, "above_prompt_tokens": 0}]
        )  # type: ignore[list-item]


def test_every_long_context_key_in_litellm_s_map_is_read() -> None:
    """Each model with an `input_cost_per_token_above_*` key gets a long-context price."""
    from gateway.accounting.price_map import litellm_cost_map

    for name, entry in litellm_cost_map().items():
        if not isinstance(entry, dict) or not entry.get("input_cost_per_token"):
            continue
        keyed = [k for k in entry if k.startswith("input_cost_per_token_above_")
                 and k.endswith("_tokens") and "hr" not in k]  # fmt: skip
        if keyed and any(entry[k] for k in keyed):
            assert long_context_prices(entry, Price(Decimal(1), Decimal(1))), name


def test_a_reservation_is_priced_at_the_long_context_price() -> None:
    cfg = DeploymentConfig(name="d", model="m", provider="gemini", upstream_model="gemini-2.5-pro")
    catalog = Catalog.build([cfg])
    book = Book()
    stage = BudgetStage(book, catalog, fail_open=False)  # type: ignore[arg-type]
    text = "word " * 250_000  # ~312k tokens as a ceiling counts them
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": text}],
                            "max_tokens": 1000}  # fmt: skip
    ctx = bare_context(
        body=body,
        tenant=TenantInfo(id="t", name="t", key_id=None, budget_usd=Decimal(100)),
        candidates=list(catalog.group("m")),
    )
    asyncio.run(stage.before(ctx))
    prompt = (book.amounts[0] * M - 1000 * 15) / Decimal("2.5")
    assert prompt == int(prompt) > 200_000  # the whole of it at $2.5, the answer at $15


def test_a_range_s_own_reasoning_price_applies_above_its_threshold() -> None:
    price = litellm("dashscope", "qwen-plus-2025-07-28")
    assert price.reasoning_output_per_mtok == 4
    long = price.at_prompt(300_000)
    assert (long.output_per_mtok, long.reasoning_output_per_mtok) == (Decimal("3.6"), 12)
    # 100 completion tokens of which 60 reasoning, above 256k
    assert long.cost_usd(300_000, 100, reasoning_tokens=60) == price.cost_usd(
        300_000, 100, reasoning_tokens=60
    )
    assert (
        price.cost_usd(300_000, 100, reasoning_tokens=60)
        == (300_000 * Decimal("1.2") + 40 * Decimal("3.6") + 60 * 12) / M
    )


def test_a_service_tier_writes_to_the_cache_at_its_own_price() -> None:
    """gpt-5.6 lists its cache-write price per tier ($5 per 1M standard, $2.50 flex; Azure's
    priority twice the standard): a tier's writes were billed at the standard price."""
    price = litellm("openai", "gpt-5.6")
    assert price.cache_write_input_per_mtok == 5
    assert price.for_tier("flex").cache_write_input_per_mtok == Decimal("2.5")
    azure = litellm("azure", "gpt-5.6")
    assert azure.for_tier("priority").cache_write_input_per_mtok == Decimal("12.5")


def test_a_configured_service_tier_keeps_its_proportion_above_the_threshold() -> None:
    """priority configured at 2x for a deployment with a long-context price: a 300k-token
    prompt on priority was billed at the flat priority price, below the standard tier's
    long-context one."""
    cfg = DeploymentConfig(
        name="d", model="m", input_cost_per_mtok=Decimal(2), output_cost_per_mtok=Decimal(8),
        cached_input_cost_per_mtok=Decimal("0.2"),
        long_context_prices=[LongContextPrice(above_prompt_tokens=200_000,
                                              input_cost_per_mtok=Decimal(4),
                                              output_cost_per_mtok=Decimal(12))],
        service_tier_prices={"priority": TierPrice(input_cost_per_mtok=Decimal(4),
                                                   output_cost_per_mtok=Decimal(16),
                                                   cached_input_cost_per_mtok=Decimal("0.4"))},
    )  # fmt: skip
    price, _ = resolve_price(cfg)
    priority = price.for_tier("priority")
    assert priority.at_prompt(200_000) is priority
    long = priority.at_prompt(300_000)
    assert (long.input_per_mtok, long.output_per_mtok, long.cached_input_per_mtok) == (
        8, 24, Decimal("0.8"),
    )  # fmt: skip


def test_a_service_tier_hears_audio_at_its_own_price() -> None:
    """Gemini 3 Flash on priority: audio in at $1.80 per 1M (standard: $1); the tier took
    the standard audio price."""
    price = litellm("gemini", "gemini-3-flash-preview")
    assert price.audio_input_per_mtok == 1
    assert price.for_tier("priority").audio_input_per_mtok == Decimal("1.8")
    gpt = litellm("openai", "gpt-4o-audio-preview")
    assert all(t.audio_input_per_mtok == gpt.audio_input_per_mtok for _, t in gpt.tiers)
