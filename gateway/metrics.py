"""Prometheus metrics, one registry per app (no module-level singletons).

With one worker the registry is a plain in-process one. With several (`serve --workers N`)
each worker is its own process: `thriftgate serve` then points PROMETHEUS_MULTIPROC_DIR at a
private directory before the workers start, prometheus_client keeps every counter, histogram
and summary in a per-process file there, and `/metrics` merges the files, so any worker's
scrape shows the whole gateway. What is computed at scrape time (collectors registered on the
registry that are not counters/gauges/histograms, e.g. the router's breaker state) cannot be
merged: it comes from the worker that answered, with a `pid` label.
"""

from __future__ import annotations

import contextlib
import glob
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The shared metrics directory when prometheus_client runs in multiprocess mode."""
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        return None  # decided when prometheus_client was imported, like the library does
    return os.environ.get(MULTIPROC_ENV) or None


class _Registry(CollectorRegistry):
    """Remembers its scrape-time collectors, which multiprocess exposition must add itself
    (its counters and histograms come from the shared files instead)."""

    def __init__(self) -> None:
        super().__init__()
        self.scrape_collectors: list[Collector] = []

    def register(self, collector: Collector) -> None:
        super().register(collector)
        if not isinstance(collector, MetricWrapperBase):
            self.scrape_collectors.append(collector)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = _Registry()
        r = self.registry
        self.requests = Counter(
            "thriftgate_requests",
            "Requests served",
            ["tenant", "model", "deployment", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "thriftgate_request_latency_seconds",
            "End-to-end latency",
            ["model", "deployment"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "thriftgate_time_to_first_token_seconds",
            "Time to first streamed token",
            ["model", "deployment"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "thriftgate_tokens", "Tokens", ["tenant", "model", "deployment", "kind"], registry=r
        )
        self.cost = Counter(
            "thriftgate_cost_usd", "Spend in USD", ["tenant", "model", "deployment"], registry=r
        )
        self.saved = Counter(
            "thriftgate_saved_usd", "USD saved, by technique", ["tenant", "technique"], registry=r
        )
        # A negative saving (thriftgate/auto or a fallback served on a deployment dearer than
        # the baseline): a counter cannot go down, so net savings are saved - overspent.
        self.overspent = Counter(
            "thriftgate_overspent_usd",
            "USD a technique cost beyond the baseline (negative savings), by technique",
            ["tenant", "technique"],
            registry=r,
        )
        self.cache = Counter(
            "thriftgate_cache_lookups", "Cache outcomes", ["tenant", "status"], registry=r
        )
        # Set at scrape time to the count of the whole spool directory (every worker's rows),
        # so with several workers the latest scrape's figure is the one to show.
        self.ledger_pending = Gauge(
            "thriftgate_ledger_spooled_rows",
            "Ledger rows spooled, not yet in the database",
            registry=r,
            multiprocess_mode="livemostrecent",
        )

    def exposition(self) -> bytes:
        """The text exposition: this registry, or every worker's merged in multiprocess mode."""
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        forget_dead_workers(path)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path)  # type: ignore[no-untyped-call]
        for collector in self.registry.scrape_collectors:
            merged.register(collector)
        return generate_latest(merged)


def forget_dead_workers(path: str) -> None:
    """A worker that died (killed, restarted by uvicorn) leaves its live gauges' files; drop
    them so `live*` gauges count only workers that are running. Its counters stay: the
    requests it served were served."""
    from prometheus_client.multiprocess import mark_process_dead

    pids = {Path(f).stem.rsplit("_", 1)[-1] for f in glob.glob(os.path.join(path, "gauge_live*"))}
    for pid in pids:
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                mark_process_dead(int(pid), path)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_exiting() -> None:
    """Called as a worker shuts down: its live gauges stop counting at once."""
    path = multiprocess_dir()
    if path is not None:
        from prometheus_client.multiprocess import mark_process_dead

        with contextlib.suppress(OSError):
            mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]
