"""Local engine: speed and price at the current load, from measured throughput, never a constant.

A GPU (or CPU) costs its hardware $/hour whether busy or idle, so a token's price is that rate
divided by the aggregate tokens/s the engine sustains at the load the request will join. The
per-sequence decode speed is learned per concurrency level (1, 2, 3-4, 5-8, ...), because
speculative decoding makes it fast at low load and slow at high load; the engine's own report
(queue depth, running sequences, aggregate decode tokens/s) and the gateway's own timings both
feed it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gateway.accounting.pricing import Price
from gateway.routing.latency import RatioWindow

_BUCKETS = 8  # concurrency 1, 2, 3-4, 5-8, 9-16, 17-32, 33-64, 65+
# Cold guess for an unmeasured level: per-sequence speed falls ~15% per doubling of the batch.
_COLD_SLOWDOWN_PER_DOUBLING = 0.85


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """What the local engine reports about itself (its `/metrics`), or what the gateway counts."""

    queue_depth: int  # requests waiting for a slot
    running: int  # sequences decoding now
    decode_tokens_per_s: float = 0.0  # aggregate, measured at this load; 0 when unknown
    observed_at: float = 0.0  # monotonic seconds


def bucket(concurrency: int) -> int:
    return min(_BUCKETS - 1, max(0, math.ceil(math.log2(max(1, concurrency)))))


@dataclass(slots=True)
class LocalQuote:
    price: Price
    ms_per_token: float
    queue_wait_ms: float
    concurrency: int


class LocalThroughput:
    """Per-sequence decode tokens/s by concurrency level, plus the hardware rate to price it."""

    __slots__ = (
        "_tps",
        "alpha",
        "hardware_usd_per_hour",
        "max_concurrency",
        "prefill_speedup",
        "wait_ratios",
    )

    def __init__(
        self,
        hardware_usd_per_hour: Decimal,
        cold_tokens_per_s: float,
        *,
        max_concurrency: int | None = None,
        prefill_speedup: float = 20.0,
        alpha: float = 0.2,
    ) -> None:
        self.hardware_usd_per_hour = hardware_usd_per_hour
        self.max_concurrency = max_concurrency or 8
        self.prefill_speedup = prefill_speedup  # a prompt token costs 1/x of a decoded one
        self.alpha = alpha
        self._tps: list[float | None] = [None] * _BUCKETS
        self._tps[0] = max(0.1, cold_tokens_per_s)
        # observed / predicted queue waits: the queue's own tail (bursts, long answers ahead)
        self.wait_ratios = RatioWindow(size=64, q=0.9, cold_ratio=2.0)

    def observe_wait(self, predicted_ms: float, observed_ms: float) -> None:
        if predicted_ms > 0:
            self.wait_ratios.add(max(observed_ms, 1.0) / predicted_ms)

    def observe(self, concurrency: int, per_sequence_tokens_per_s: float) -> None:
        if per_sequence_tokens_per_s <= 0 or not math.isfinite(per_sequence_tokens_per_s):
            return
        b = bucket(concurrency)
        old = self._tps[b]
        self._tps[b] = (
            per_sequence_tokens_per_s
            if old is None
            else old + self.alpha * (per_sequence_tokens_per_s - old)
        )

    def observe_load(self, load: EngineLoad) -> None:
        if load.running > 0 and load.decode_tokens_per_s > 0:
            self.observe(load.running, load.decode_tokens_per_s / load.running)

    def per_sequence_tokens_per_s(self, concurrency: int) -> float:
        b = bucket(concurrency)
        value = self._tps[b]
        if value is not None:
            return value
        # nearest measured level below (level 0 always is), scaled by the cold slowdown
        for lower in range(b - 1, -1, -1):
            known = self._tps[lower]
            if known is not None:
                return known * _COLD_SLOWDOWN_PER_DOUBLING ** (b - lower)
        return 1.0  # unreachable: level 0 is always set

    def quote(self, load: EngineLoad, expected_completion_tokens: int) -> LocalQuote:
        """Price and speed for one more request joining `load`."""
        active = load.running + load.queue_depth + 1
        concurrency = min(active, self.max_concurrency)
        per_seq = self.per_sequence_tokens_per_s(concurrency)
        aggregate = per_seq * concurrency
        usd_per_token = float(self.hardware_usd_per_hour) / 3600.0 / aggregate
        out_per_mtok = Decimal(repr(round(usd_per_token * 1e6, 6)))
        in_per_mtok = Decimal(repr(round(usd_per_token * 1e6 / self.prefill_speedup, 6)))
        ms_per_token = 1000.0 / per_seq
        waiting = max(0, active - self.max_concurrency)
        # each waiting request ahead frees after about one service time / slots
        queue_wait_ms = waiting * expected_completion_tokens * ms_per_token / self.max_concurrency
        return LocalQuote(
            Price(in_per_mtok, out_per_mtok), ms_per_token, queue_wait_ms, concurrency
        )

    def to_state(self) -> dict[str, Any]:
        return {"v": 1, "tps": list(self._tps)}

    def load_state(self, state: dict[str, Any]) -> None:
        raw = state.get("tps") if state.get("v") == 1 else None
        if not isinstance(raw, list) or len(raw) != _BUCKETS:
            return
        try:
            values = [None if v is None else float(v) for v in raw]
        except (TypeError, ValueError):
            return
        if values[0] is not None and all(v is None or (v > 0 and math.isfinite(v)) for v in values):
            self._tps = values
