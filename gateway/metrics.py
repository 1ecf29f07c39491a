"""Prometheus metrics, one registry per app (no module-level singletons)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
        self.cache = Counter(
            "thriftgate_cache_lookups", "Cache outcomes", ["tenant", "status"], registry=r
        )
        self.ledger_pending = Gauge(
            "thriftgate_ledger_spooled_rows",
            "Ledger rows spooled, not yet in the database",
            registry=r,
        )
