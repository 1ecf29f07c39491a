"""Prometheus metrics of the router: predicted vs observed latency, breakers, SLO attainment.

Predicted and observed latency are Summaries (`_sum`/`_count`) per deployment and phase
(`ttft`, `total`), so `rate(observed_sum)/rate(observed_count)` sits next to the predicted one
on a dashboard. Breaker state and learned figures are read from the router at scrape time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Summary
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.metrics import multiprocess_dir
from gateway.routing.router import Router

# With several workers each has its own router: these figures come from the worker that
# answered the scrape and are labelled with its pid (they cannot be summed across workers).
PER_WORKER_NOTE = " (per worker: the one that answered this scrape, see its pid label)"


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry, router: Router) -> None:
        self.predicted = Summary(
            "thriftgate_route_predicted_latency_seconds",
            "Latency the router predicted for the deployment it chose (expectation)",
            ["deployment", "phase"],
            registry=registry,
        )
        self.observed = Summary(
            "thriftgate_route_observed_latency_seconds",
            "Latency observed from the deployment (per attempt)",
            ["deployment", "phase"],
            registry=registry,
        )
        self.decisions = Counter(
            "thriftgate_route_decisions",
            "Routing decisions by reason",
            ["model", "reason"],
            registry=registry,
        )
        self.slo = Counter(
            "thriftgate_route_slo",
            "Requests with an SLO, by outcome (met / missed)",
            ["model", "deployment", "outcome"],
            registry=registry,
        )
        self.attempts = Counter(
            "thriftgate_route_attempt_failures",
            "Failed attempts on a deployment (each one retried elsewhere when allowed)",
            ["deployment", "status"],
            registry=registry,
        )
        registry.register(RouterStateCollector(router))


class RouterStateCollector(Collector):
    """Breaker state (0 closed, 1 half-open, 2 open), in-flight requests and learned speeds."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def collect(self) -> Iterator[Metric]:
        per_worker = multiprocess_dir() is not None
        note = PER_WORKER_NOTE if per_worker else ""
        labels = ["deployment", "pid"] if per_worker else ["deployment"]
        extra = [str(os.getpid())] if per_worker else []
        breaker = GaugeMetricFamily(
            "thriftgate_route_breaker_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open" + note,
            labels=labels,
        )
        in_flight = GaugeMetricFamily(
            "thriftgate_route_in_flight", "Requests in flight" + note, labels=labels
        )
        ttft = GaugeMetricFamily(
            "thriftgate_route_learned_ttft_seconds",
            "Learned time to first token at a 1000-token prompt" + note,
            labels=labels,
        )
        itl = GaugeMetricFamily(
            "thriftgate_route_learned_seconds_per_token",
            "Learned inter-token time" + note,
            labels=labels,
        )
        for name in self.router.latency:
            breaker.add_metric([name, *extra], self.router.breaker_state(name).gauge)
            in_flight.add_metric([name, *extra], self.router.in_flight.get(name, 0))
            model = self.router.latency[name]
            a, b = model.ttft_coefficients()
            ttft.add_metric([name, *extra], (a + 1000 * b) / 1000.0)
            itl.add_metric([name, *extra], model.ms_per_token / 1000.0)
        yield from (breaker, in_flight, ttft, itl)

    def describe(self) -> Iterator[Metric]:
        return iter(())
