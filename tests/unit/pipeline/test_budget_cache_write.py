"""A deployment that bills prompt-cache writes above its input price (Anthropic: 1.25x for the
5-minute cache) can bill every prompt token at that price; a reservation at the input price
let each request admitted beside others overspend the budget by the difference (hunt9 h2)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from gateway.pipeline.context import TenantInfo
from gateway.pipeline.limits import BudgetStage
from gateway.routing.catalog import Catalog
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context
from tests.unit.pipeline.fakes import Book


def reserved(content: Any = "x", extra: dict[str, Any] | None = None, **prices: Any) -> Decimal:
    prices.setdefault("output_cost_per_mtok", Decimal(0))
    cfg = DeploymentConfig(name="d", model="m", **prices)
    catalog = Catalog.build([cfg])
    book = Book()
    stage = BudgetStage(book, catalog, fail_open=False)  # type: ignore[arg-type]
    ctx = bare_context(
        body={
            "model": "m",
            "max_tokens": 1,
            "messages": [{"role": "user", "content": content}],
            **(extra or {}),
        },
        tenant=TenantInfo(id="t", name="t", key_id=None, budget_usd=Decimal(1)),
        candidates=list(catalog.group("m")),
        prompt_tokens_estimate=1_000_000,
    )
    asyncio.run(stage.before(ctx))
    return book.amounts[0]


def test_the_prompt_is_reserved_at_the_cache_write_price_when_dearer() -> None:
    write = {"input_cost_per_mtok": Decimal(3), "cache_write_input_cost_per_mtok": Decimal("3.75")}
    assert reserved(**write) == Decimal("3.75")


def test_a_cheaper_cached_price_reserves_the_input_price() -> None:
    cached = {"input_cost_per_mtok": Decimal(3), "cached_input_cost_per_mtok": Decimal("0.3")}
    assert reserved(**cached) == Decimal(3)


HOUR_PRICES = {
    "input_cost_per_mtok": Decimal(3),
    "cache_write_input_cost_per_mtok": Decimal("3.75"),
    "cache_write_1h_input_cost_per_mtok": Decimal(6),
}


def test_a_prompt_marked_for_the_one_hour_cache_is_reserved_at_its_write_price() -> None:
    hour = [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    assert reserved(hour, **HOUR_PRICES) == Decimal(6)


def test_without_a_one_hour_mark_the_five_minute_write_price_is_reserved() -> None:
    five = [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]
    assert reserved(five, **HOUR_PRICES) == Decimal("3.75")


AUDIO_PRICES = {
    "input_cost_per_mtok": Decimal("0.15"),
    "output_cost_per_mtok": Decimal("0.6"),
    "audio_input_cost_per_mtok": Decimal(10),
    "audio_output_cost_per_mtok": Decimal(20),
}


def test_a_prompt_with_audio_and_an_answer_in_audio_are_reserved_at_the_audio_prices() -> None:
    heard = [{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]
    # the prompt (1M tokens, the estimate) at $10, the 1-token answer at $20
    spoken = {"modalities": ["text", "audio"]}
    assert reserved(heard, spoken, **AUDIO_PRICES) == Decimal(10) + Decimal(20) / 1_000_000
    assert reserved("x", None, **AUDIO_PRICES) == Decimal("0.15") + Decimal("0.6") / 1_000_000
