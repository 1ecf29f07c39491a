"""`thriftgate route explain` (routing/explain.py): what it can and cannot know."""

from __future__ import annotations

from typing import Any

from gateway.routing.explain import explain
from gateway.routing.router import Router


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
