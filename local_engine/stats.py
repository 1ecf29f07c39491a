"""Live engine measurements the router and `/metrics` read: queue, TTFT, throughput, acceptance.

Written by the engine thread, read from anywhere; one lock guards the counters.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from decimal import Decimal

from local_engine.spec_decode.metrics import SpecDecodeCounters, SpecDecodeSnapshot


@dataclass(frozen=True, slots=True)
class EngineStats:
    """What `stats()` returns; the router prices local tokens with `cost_per_mtok_usd`."""

    queue_depth: int  # waiting to start
    running: int  # being decoded
    requests_total: int
    prompt_tokens_total: int
    completion_tokens_total: int
    ttft_ms_ewma: float | None
    tokens_per_s: float | None  # decode throughput while busy, recent window
    acceptance_rate: float | None  # accepted / proposed draft tokens
    mean_acceptance_length: float | None
    hardware_usd_per_hour: Decimal
    spec: SpecDecodeSnapshot

    @property
    def cost_per_mtok_usd(self) -> Decimal | None:
        """Hardware $/hour divided by measured tokens/hour, per million tokens."""
        if not self.tokens_per_s:
            return None
        tokens_per_hour = Decimal(repr(self.tokens_per_s)) * 3600
        return (self.hardware_usd_per_hour / tokens_per_hour * 1_000_000).quantize(
            Decimal("0.000001")
        )


class StatsRecorder:
    def __init__(self, hardware_usd_per_hour: Decimal, window_s: float = 30.0) -> None:
        self.hardware_usd_per_hour = hardware_usd_per_hour
        self.window_s = window_s
        self.spec = SpecDecodeCounters()
        self._lock = threading.Lock()
        self._steps: deque[tuple[float, float, int]] = deque()  # (end time, busy s, tokens)
        self.queue_depth = 0
        self.running = 0
        self.requests_total = 0
        self.prompt_tokens_total = 0
        self.completion_tokens_total = 0
        self.ttft_ms_ewma: float | None = None
        self.ttft_samples_ms: deque[float] = deque(maxlen=512)

    def step(self, busy_s: float, tokens: int) -> None:
        now = time.perf_counter()
        with self._lock:
            self._steps.append((now, busy_s, tokens))
            self.completion_tokens_total += tokens
            while self._steps and now - self._steps[0][0] > self.window_s:
                self._steps.popleft()

    def first_token(self, ttft_s: float) -> None:
        ms = ttft_s * 1000.0
        with self._lock:
            self.ttft_samples_ms.append(ms)
            self.ttft_ms_ewma = (
                ms if self.ttft_ms_ewma is None else 0.8 * self.ttft_ms_ewma + 0.2 * ms
            )

    def admitted(self, prompt_tokens: int) -> None:
        with self._lock:
            self.requests_total += 1
            self.prompt_tokens_total += prompt_tokens

    def tokens_per_s(self) -> float | None:
        with self._lock:
            busy = sum(s[1] for s in self._steps)
            tokens = sum(s[2] for s in self._steps)
        return tokens / busy if busy > 0 and tokens > 0 else None

    def snapshot(self) -> EngineStats:
        spec = self.spec.snapshot()
        tps = self.tokens_per_s()
        with self._lock:
            return EngineStats(
                queue_depth=self.queue_depth,
                running=self.running,
                requests_total=self.requests_total,
                prompt_tokens_total=self.prompt_tokens_total,
                completion_tokens_total=self.completion_tokens_total,
                ttft_ms_ewma=self.ttft_ms_ewma,
                tokens_per_s=tps,
                acceptance_rate=spec.acceptance_rate,
                mean_acceptance_length=spec.mean_acceptance_length,
                hardware_usd_per_hour=self.hardware_usd_per_hour,
                spec=spec,
            )
