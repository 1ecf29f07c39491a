"""Requests in flight to a deployment, and what their lateness already says about it.

A response's latency is only learned when it ends, seconds after an upstream slowed down. But a
request still waiting past its predicted tail is evidence too (a censored observation): if a
stream has no first token after 2x its predicted TTFT, the deployment is at least 2x slower
right now. `overdue_factors` turns that into multipliers for the next predictions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

from gateway.routing.latency import LatencyPrediction

OLDEST_CHECKED = 4  # flights are kept in start order; the oldest are the ones that can be late


@dataclass(slots=True, eq=False)
class Flight:
    """One attempt on one deployment, from `Router.start` to its outcome."""

    name: str
    model: str
    prompt_tokens: int
    stream: bool
    started: float  # router clock, seconds
    predicted: LatencyPrediction
    concurrency: int  # requests on this deployment including this one, at its start
    first_token_ms: float | None = None
    finished: bool = False


def overdue_factors(flights: Iterable[Flight], now: float) -> tuple[float, float]:
    """(TTFT factor, total factor), each >= 1: how far the oldest flights overran their tail."""
    ttft_factor = total_factor = 1.0
    for f in islice(flights, OLDEST_CHECKED):
        elapsed_ms = (now - f.started) * 1000.0
        if f.stream and f.first_token_ms is None and f.predicted.ttft_high_ms > 0:
            ttft_factor = max(ttft_factor, elapsed_ms / f.predicted.ttft_high_ms)
        if f.predicted.total_high_ms > 0:
            total_factor = max(total_factor, elapsed_ms / f.predicted.total_high_ms)
    return ttft_factor, max(total_factor, ttft_factor)


def stretch(pred: LatencyPrediction, ttft_factor: float, total_factor: float) -> LatencyPrediction:
    if ttft_factor <= 1.0 and total_factor <= 1.0:
        return pred
    return LatencyPrediction(
        pred.ttft_ms * ttft_factor,
        pred.ttft_high_ms * ttft_factor,
        pred.total_ms * total_factor,
        pred.total_high_ms * total_factor,
    )
