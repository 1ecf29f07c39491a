"""`thriftgate route explain` (routing/explain.py): what it can and cannot know."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from gateway.routing.explain import explain
from gateway.routing.router import Router
from gateway.settings import LongContextPrice


def test_explain_says_breakers_and_load_are_not_seen_from_the_cli(
    make_catalog: Any, dep_config: Any
) -> None:
    """The CLI plans on a router of its own: learned figures come from the table, but breakers,
    requests in flight and engine load live in the serving processes. Its breaker column read
    `closed` and its decision named a deployment whose breaker was open in the gateway, with
    nothing to say the two may differ."""
    router = Router(
        make_catalog(
            dep_config("a", ttft_ms=100, ms_per_token=5, default=True),
            dep_config("b", inp="0.5", out="1", ttft_ms=900, ms_per_token=30),
        )
    )
    lines = explain(router, "llama", prompt_tokens=100, slo_ms=None)
    assert lines[1].startswith("decision: b")
    assert any("/metrics" in line and "breaker" in line for line in lines[-2:]), lines


def test_explain_names_the_long_context_price_a_long_prompt_is_billed_at(
    make_catalog: Any, dep_config: Any
) -> None:
    """A 300k-token prompt: the deployment with a long-context price (Gemini 2.5 Pro above
    200k: $2.5 / $15) is dearer, and explain says which price it predicted with (hunt11 h111)."""
    tiered = dep_config("a", inp="1.25", out="10", default=True)
    tiered = tiered.model_copy(update={"long_context_prices": (LongContextPrice(
        above_prompt_tokens=200_000, input_cost_per_mtok=Decimal("2.5"),
        output_cost_per_mtok=Decimal(15)),)})  # fmt: skip
    router = Router(make_catalog(tiered, dep_config("b", inp="2", out="12")))
    short = explain(router, "llama", prompt_tokens=100_000, slo_ms=None, max_tokens=100)
    assert short[1].startswith("decision: a")
    assert not any("long-context" in line for line in short)
    lines = explain(router, "llama", prompt_tokens=300_000, slo_ms=None, max_tokens=100)
    assert lines[1].startswith("decision: b"), lines
    row_a = next(line for line in lines if line.split()[:2] == ["2", "a"])
    assert "0.751500" in row_a  # 300,000 x $2.5 + 100 x $15, per 1M
    assert any(
        line.strip().startswith("a: a prompt above 200,000 tokens") and "2.5 / 15 USD" in line
        for line in lines
    ), lines
