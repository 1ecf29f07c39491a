"""`thriftgate route explain`: each candidate's predicted cost and latency, as the router sees."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.accounting.pricing import usd_text
from gateway.routing.router import RoutePlan, Router


def explain(
    router: Router,
    model: str,
    *,
    prompt_tokens: int,
    slo_ms: float | None,
    max_tokens: int | None = None,
    stream: bool = False,
    auto_models: Sequence[str] | None = None,
) -> list[str]:
    """Plan one hypothetical request and describe the ranking, one line per candidate."""
    plan = router.plan(
        model,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        slo_ms=slo_ms,
        stream=stream,
        auto_models=auto_models,
    )
    return [*render(plan, router), LIVE_STATE_NOTE]


# explain() plans on the CLI's own router: the learned figures are the table's (as of the
# gateway's last save), the live state below is the serving processes' alone.
LIVE_STATE_NOTE = (
    "note: planned here, not in the gateway: breakers, requests in flight and engine load "
    "are not seen (each candidate counts as closed and idle); the live breakers are "
    "thriftgate_route_breaker_state on /metrics"
)


def render(plan: RoutePlan, router: Router) -> list[str]:
    judged = "TTFT" if plan.stream else "total time"
    slo = f"{plan.slo_ms:g} ms on {judged}" if plan.slo_ms is not None else "none"
    est = plan.completion
    lines = [
        f"model {plan.model}: prompt {plan.prompt_tokens} tokens, completion {est.expected} "
        f"expected / {est.high} long ({est.source}); SLO {slo}",
        f"decision: {plan.chosen.name if plan.chosen else '(none)'} ({plan.reason})",
        f"{'#':>2}  {'deployment':<24}{'cost USD':>12}{'ttft ms':>10}{'(tail)':>9}"
        f"{'total ms':>10}{'(tail)':>9}  {'meets SLO':<10}{'breaker':<10}samples",
    ]
    for i, c in enumerate(plan.ranked, 1):
        lat = c.latency
        meets = "-" if c.meets_slo is None else ("yes" if c.meets_slo else "no")
        samples = router.latency[c.name].samples
        lines.append(
            f"{i:>2}  {c.name:<24}{c.cost_usd:>12.6f}{lat.ttft_ms:>10.0f}{lat.ttft_high_ms:>9.0f}"
            f"{lat.total_ms:>10.0f}{lat.total_high_ms:>9.0f}  {meets:<10}"
            f"{router.breaker_state(c.name).value:<10}{samples}"
        )
    for c in plan.ranked:
        tier = c.deployment.price.long_context_tier(plan.prompt_tokens)
        if tier is not None:
            above, price = tier
            lines.append(
                f"    {c.name}: a prompt above {above:,} tokens is billed at its long-context "
                f"prices, {usd_text(price.input_per_mtok)} / {usd_text(price.output_per_mtok)} "
                "USD per 1M tokens in / out, for every token"
            )
    names = {c.name for c in plan.ranked}
    for dep in router.candidates(plan.model, None):
        if dep.name not in names:
            lines.append(f"    {dep.name:<24}excluded: breaker {router.breaker_state(dep.name)}")
    if plan.default is not None and plan.chosen is not None:
        base = plan.default_cost_usd(plan.prompt_tokens, est.expected)
        if base is not None:
            lines.append(
                f"default deployment {plan.default.name}: {base:.6f} USD; "
                f"routing saves {base - plan.chosen.cost_usd:.6f} USD on this request"
            )
    return lines
