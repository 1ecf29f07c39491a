"""Requests in flight to a deployment, and what their lateness already says about it.

A response's latency is only learned when it ends, seconds after an upstream slowed down. But a
request still waiting past its predicted tail is evidence too (a censored observation): if a
stream has no first token after 2x its predicted TTFT tail, the deployment is at least 2x
slower right now. `overdue_factors` turns that into multipliers for the next predictions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

from gateway.routing.latency import LatencyPrediction

OLDEST_CHECKED = 4  # callers pass streams awaiting a first token, oldest (most overdue) first


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
    max_tokens: int | None = None  # the request's cap, for learning answer/max_tokens
    # False when the attempt waited for something that will not recur (a local engine loading
    # its model): its outcome still counts for the breaker, but its time teaches no latency.
    learn: bool = True


def overdue_factors(flights: Iterable[Flight], now: float) -> tuple[float, float]:
    """(TTFT factor, total factor), each >= 1: how far the oldest streams overran their tail.

    Only a stream still waiting for its first token is clean evidence. A response running past
    its predicted total may just be a longer answer than expected, so it says nothing about the
    deployment's speed; a slow TTFT stretches the total by the same factor.
    """
    factor = 1.0
    for f in islice(flights, OLDEST_CHECKED):
        if f.stream and f.first_token_ms is None and f.predicted.ttft_high_ms > 0:
            factor = max(factor, (now - f.started) * 1000.0 / f.predicted.ttft_high_ms)
    return factor, factor


def stretch(pred: LatencyPrediction, ttft_factor: float, total_factor: float) -> LatencyPrediction:
    if ttft_factor <= 1.0 and total_factor <= 1.0:
        return pred
    return LatencyPrediction(
        pred.ttft_ms * ttft_factor,
        pred.ttft_high_ms * ttft_factor,
        pred.total_ms * total_factor,
        pred.total_high_ms * total_factor,
        pred.queue_wait_ms,
    )
