"""`/metrics`: a Prometheus collector that reads the backend's live stats at scrape time.

Each app gets its own `CollectorRegistry` (no module-level metrics), so tests and several
engines in one process never share counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from local_engine.energy_attribution import EnergySource
from local_engine.stats import EngineStats

P = "thriftgate_engine_"


class EngineCollector(Collector):
    def __init__(
        self, stats: Callable[[], EngineStats], model: str, backend: str, energy: EnergySource
    ) -> None:
        self._stats = stats
        self._labels = {"model": model, "backend": backend}
        self._energy = energy

    def _gauge(self, name: str, doc: str, value: float | None) -> Iterator[Metric]:
        if value is None:
            return
        g = GaugeMetricFamily(P + name, doc, labels=list(self._labels))
        g.add_metric(list(self._labels.values()), value)
        yield g

    def _counter(self, name: str, doc: str, value: float) -> Iterator[Metric]:
        c = CounterMetricFamily(P + name, doc, labels=list(self._labels))
        c.add_metric(list(self._labels.values()), value)
        yield c

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        yield from self._gauge("queue_depth", "Requests waiting to start.", s.queue_depth)
        yield from self._gauge("running_requests", "Requests being decoded.", s.running)
        yield from self._counter("requests", "Requests admitted.", s.requests_total)
        yield from self._counter("prompt_tokens", "Prompt tokens processed.", s.prompt_tokens_total)
        yield from self._counter(
            "generation_tokens", "Tokens generated.", s.completion_tokens_total
        )
        ttft = None if s.ttft_ms_ewma is None else s.ttft_ms_ewma / 1000.0
        yield from self._gauge("ttft_seconds_ewma", "Time to first token (EWMA).", ttft)
        yield from self._gauge(
            "tokens_per_second",
            "Generated tokens per busy second (recent window).",
            s.tokens_per_s,
        )
        yield from self._counter(
            "spec_decode_num_drafts", "Verify steps with drafts.", s.spec.num_drafts
        )
        yield from self._counter(
            "spec_decode_num_draft_tokens", "Draft tokens proposed.", s.spec.num_draft_tokens
        )
        yield from self._counter(
            "spec_decode_num_accepted_tokens", "Draft tokens accepted.", s.spec.num_accepted_tokens
        )
        per_pos = CounterMetricFamily(
            P + "spec_decode_num_accepted_tokens_per_pos",
            "Accepted drafts by position.",
            labels=[*self._labels, "position"],
        )
        for pos, count in enumerate(s.spec.accepted_per_position):
            per_pos.add_metric([*self._labels.values(), str(pos)], count)
        yield per_pos
        yield from self._gauge(
            "spec_decode_acceptance_rate", "Accepted / proposed drafts.", s.acceptance_rate
        )
        yield from self._gauge(
            "hardware_usd_per_hour", "Configured hardware price.", float(s.hardware_usd_per_hour)
        )
        cost = s.cost_per_mtok_usd
        yield from self._gauge(
            "cost_per_mtok_usd",
            "Hardware $/hour over measured tokens/hour, per 1M tokens.",
            None if cost is None else float(cost),
        )
        reading = self._energy.read()
        avail = GaugeMetricFamily(
            P + "energy_available",
            "1 if GPU energy is measured (NVML); reason says why not.",
            labels=[*self._labels, "reason"],
        )
        avail.add_metric([*self._labels.values(), reading.reason], 1.0 if reading.available else 0)
        yield avail
        if reading.available and reading.joules:
            yield from self._gauge("energy_joules", "GPU energy since start.", reading.joules)
            yield from self._gauge("power_watts", "GPU power draw now.", reading.power_w)
            yield from self._gauge(
                "tokens_per_joule",
                "Generated tokens per joule since start.",
                s.completion_tokens_total / reading.joules,
            )


def build_registry(collector: EngineCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return bytes(generate_latest(registry))
