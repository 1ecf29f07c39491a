"""The routing decision: cheapest among those predicted to meet the SLO, then the rest by speed.

Pure: it ranks already-priced, already-predicted candidates. The first of the ranking serves;
the others are the fallback order. Reason codes explain the choice in a response header:

    cheapest-no-slo        no SLO asked for: the cheapest healthy deployment
    cheapest-within-slo    the cheapest of those predicted to meet the SLO
    fastest-slo-unmet      none is predicted to meet it: the fastest one (ledger: slo_met=false)
    probe-slo-unmet        none is predicted to meet it, and one whose figures are stale is
                           tried: it may have recovered (set by the router; slo_met=false)
    only-candidate         one healthy deployment; nothing to choose
    fallback-after-<s>     (set by dispatch) the earlier choice failed with status <s>
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from gateway.routing.latency import LatencyPrediction

if TYPE_CHECKING:
    from gateway.routing.catalog import Deployment

CHEAPEST_NO_SLO = "cheapest-no-slo"
CHEAPEST_WITHIN_SLO = "cheapest-within-slo"
FASTEST_SLO_UNMET = "fastest-slo-unmet"
ONLY_CANDIDATE = "only-candidate"
PROBE_SLO_UNMET = "probe-slo-unmet"


def fallback_reason(status: int | None) -> str:
    """`fallback-after-502`; a failure without an HTTP status (connect error) reads `-error`."""
    return f"fallback-after-{status}" if status is not None else "fallback-after-error"


@dataclass(slots=True)
class Candidate:
    """One deployment as the policy sees it: predicted cost and latency for this request."""

    deployment: Deployment
    cost_usd: Decimal
    latency: LatencyPrediction
    meets_slo: bool | None = None  # None: no SLO asked for

    @property
    def name(self) -> str:
        return self.deployment.name


class RoutePolicy:
    """Ranks candidates for one request (stateless; the SLO is judged on the latency tail)."""

    __slots__ = ()

    def rank(
        self, candidates: Sequence[Candidate], slo_ms: float | None, stream: bool
    ) -> tuple[list[Candidate], str]:
        if not candidates:
            return [], ONLY_CANDIDATE
        if slo_ms is None:
            ranked = sorted(candidates, key=lambda c: (c.cost_usd, c.latency.expected_ms(stream)))
            reason = CHEAPEST_NO_SLO
        else:
            meeting: list[Candidate] = []
            missing: list[Candidate] = []
            for c in candidates:
                ok = c.latency.judged_ms(stream) <= slo_ms
                marked = Candidate(c.deployment, c.cost_usd, c.latency, ok)
                (meeting if ok else missing).append(marked)
            meeting.sort(key=lambda c: (c.cost_usd, c.latency.judged_ms(stream)))
            # Past the SLO the tail no longer decides: the best bet is the lowest expectation.
            missing.sort(key=lambda c: (c.latency.expected_ms(stream), c.cost_usd))
            ranked = meeting + missing
            reason = CHEAPEST_WITHIN_SLO if meeting else FASTEST_SLO_UNMET
        if len(ranked) == 1:
            reason = ONLY_CANDIDATE
        return ranked, reason
