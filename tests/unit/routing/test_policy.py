"""RoutePolicy: cheapest within the SLO, else fastest; stream judged on TTFT, else total."""

from __future__ import annotations

from decimal import Decimal

from gateway.routing.catalog import Catalog
from gateway.routing.latency import LatencyPrediction
from gateway.routing.policy import (
    CHEAPEST_NO_SLO,
    CHEAPEST_WITHIN_SLO,
    FASTEST_SLO_UNMET,
    ONLY_CANDIDATE,
    Candidate,
    RoutePolicy,
    fallback_reason,
)
from gateway.settings import DeploymentConfig


def cand(catalog: Catalog, name: str, cost: str, ttft: float, total: float) -> Candidate:
    lat = LatencyPrediction(ttft, ttft, total, total)
    return Candidate(catalog.deployments[name], Decimal(cost), lat)


def catalog() -> Catalog:
    return Catalog.build(
        [
            DeploymentConfig(name=n, model="llama", input_cost_per_mtok=1, output_cost_per_mtok=1)
            for n in ("cheap", "mid", "fast")
        ]
    )


def names(ranked: list[Candidate]) -> list[str]:
    return [c.name for c in ranked]


def test_cheapest_within_slo_then_rest_by_speed() -> None:
    cat = catalog()
    cands = [
        cand(cat, "cheap", "0.001", ttft=900, total=5000),
        cand(cat, "mid", "0.002", ttft=300, total=2000),
        cand(cat, "fast", "0.010", ttft=100, total=800),
    ]
    ranked, reason = RoutePolicy().rank(cands, slo_ms=2500, stream=False)
    assert reason == CHEAPEST_WITHIN_SLO
    assert names(ranked) == ["mid", "fast", "cheap"]
    assert [c.meets_slo for c in ranked] == [True, True, False]
    # streaming: judged on TTFT, so the cheap one's 900 ms TTFT is fine
    ranked, _ = RoutePolicy().rank(cands, slo_ms=1000, stream=True)
    assert names(ranked)[0] == "cheap"


def test_fastest_when_none_meets_it() -> None:
    cat = catalog()
    cands = [
        cand(cat, "cheap", "0.001", 900, 5000),
        cand(cat, "fast", "0.010", 100, 800),
        cand(cat, "mid", "0.002", 300, 2000),
    ]
    ranked, reason = RoutePolicy().rank(cands, slo_ms=500, stream=False)
    assert reason == FASTEST_SLO_UNMET
    assert names(ranked) == ["fast", "mid", "cheap"]
    assert not any(c.meets_slo for c in ranked)


def test_no_slo_is_cheapest_with_latency_tie_break() -> None:
    cat = catalog()
    cands = [
        cand(cat, "cheap", "0.001", 900, 5000),
        cand(cat, "mid", "0.001", 300, 2000),
        cand(cat, "fast", "0.010", 100, 800),
    ]
    ranked, reason = RoutePolicy().rank(cands, slo_ms=None, stream=False)
    assert reason == CHEAPEST_NO_SLO
    assert names(ranked) == ["mid", "cheap", "fast"]
    assert ranked[0].meets_slo is None


def test_only_candidate_and_empty() -> None:
    cat = catalog()
    ranked, reason = RoutePolicy().rank([cand(cat, "fast", "1", 1, 1)], slo_ms=0.5, stream=True)
    assert reason == ONLY_CANDIDATE and ranked[0].meets_slo is False
    assert RoutePolicy().rank([], slo_ms=None, stream=False)[0] == []


def test_fallback_reason() -> None:
    assert fallback_reason(502) == "fallback-after-502"
    assert fallback_reason(None) == "fallback-after-error"
