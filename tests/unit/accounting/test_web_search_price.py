"""Web searches, billed apiece at the search context size asked (hunt11 h111)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from gateway.accounting.pricing import resolve_price, web_search_asked
from gateway.pipeline.context import TenantInfo
from gateway.pipeline.limits import BudgetStage
from gateway.routing.catalog import Catalog
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context
from tests.unit.pipeline.fakes import Book


def price_of(provider: str, model: str) -> Any:
    return resolve_price(
        DeploymentConfig(name="d", model="m", provider=provider, upstream_model=model)
    )[0]


def test_gemini_2_grounding_is_one_charge_a_prompt_gemini_3_one_a_search() -> None:
    assert price_of("gemini", "gemini-2.5-pro").web_search_cost_usd(4) == Decimal("0.035")
    three = price_of("gemini", "gemini-3-pro-preview")
    assert three.web_search_cost_usd(4) == 4 * three.web_search_cost_usd(1)


def test_a_service_tier_and_a_long_prompt_keep_the_search_price() -> None:
    price = price_of("openai", "gpt-5.4")
    if price.web_search_usd:
        long = price.for_tier("priority").at_prompt(300_000)
        assert long.web_search_usd == price.web_search_usd
    gemini = price_of("gemini", "gemini-2.5-pro")
    assert gemini.at_prompt(300_000).web_search_usd == gemini.web_search_usd


def test_what_a_request_asks_for() -> None:
    assert web_search_asked({}) == (0, None)
    assert web_search_asked({"web_search_options": {"search_context_size": "high"}}) == (1, "high")
    tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
    assert web_search_asked({"tools": [tool, {"type": "function"}]}) == (5, None)
    assert web_search_asked({"tools": [{"googleSearch": {}}]}) == (1, None)
    assert web_search_asked({"tools": [{**tool, "max_uses": True}]}) == (1, None)


def test_the_budget_reserves_the_searches_a_request_may_make() -> None:
    """A request allowing three searches at $0.01 reserved only its tokens: tenants at the
    end of their budget, admitted beside it, overspent by the searches."""
    cfg = DeploymentConfig(
        name="d", model="m", provider="openai", input_cost_per_mtok=Decimal(1),
        output_cost_per_mtok=Decimal(1), web_search_usd_per_query=Decimal("0.01"),
    )  # fmt: skip
    catalog = Catalog.build([cfg])

    def reserved(body: dict[str, Any]) -> Decimal:
        book = Book()
        stage = BudgetStage(book, catalog, fail_open=False)  # type: ignore[arg-type]
        ctx = bare_context(
            body={"model": "m", "messages": [], "max_tokens": 100, **body},
            tenant=TenantInfo(id="t", name="t", key_id=None, budget_usd=Decimal(1)),
            candidates=list(catalog.group("m")),
        )
        asyncio.run(stage.before(ctx))
        return book.amounts[0]

    tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    # (the tool's JSON counts as prompt too: a few tokens at $1 per 1M)
    assert Decimal("0.03") < reserved({"tools": [tool]}) - reserved({}) < Decimal("0.0301")


def test_an_answer_is_reserved_at_the_reasoning_price_where_it_is_dearer() -> None:
    """Qwen Plus in thinking mode bills reasoning at $4 per 1M, answers at $1.20: a
    1,000-token answer (all of it may be reasoning) was reserved at $1.20 (hunt11 h111)."""
    cfg = DeploymentConfig(
        name="d", model="m", provider="dashscope", upstream_model="qwen-plus-2025-07-14"
    )
    catalog = Catalog.build([cfg])
    book = Book()
    stage = BudgetStage(book, catalog, fail_open=False)  # type: ignore[arg-type]
    ctx = bare_context(
        body={"model": "m", "messages": [], "max_tokens": 1000},
        tenant=TenantInfo(id="t", name="t", key_id=None, budget_usd=Decimal(1)),
        candidates=list(catalog.group("m")),
    )
    asyncio.run(stage.before(ctx))
    answer = book.amounts[0] - Decimal(8) * Decimal("0.4") / 1_000_000  # the prompt's ceiling
    assert answer == 1000 * Decimal(4) / 1_000_000
