"""The latency ratio windows and the answer-length windows keep a sorted copy up to date per
sample (so a decision reads a quantile by index instead of sorting): after any sequence of
samples, evictions and reloads, it must give what sorting the window would."""

from __future__ import annotations

import math
import random

from gateway.routing.completion import LengthStats
from gateway.routing.latency import RatioWindow


def naive_quantile(values: list[float], q: float, floor: float, cold: float, min_n: int) -> float:
    if not values:
        return cold
    ordered = sorted(values)
    value = max(floor, ordered[min(len(ordered) - 1, int(q * len(ordered)))])
    if len(values) < min_n:
        w = len(values) / min_n
        value = w * value + (1.0 - w) * max(value, cold)
    return value


def test_ratio_window_quantile_matches_a_sort_of_its_samples() -> None:
    rng = random.Random(5)
    window = RatioWindow(size=16, q=0.9, cold_ratio=1.25, min_samples=8, floor=1.0)
    kept: list[float] = []
    assert window.quantile() == 1.25
    for i in range(400):
        # repeats and ties on purpose: eviction must remove one copy of the right value
        ratio = rng.choice([0.5, 1.0, 1.0, 2.0]) if i % 3 else rng.uniform(0.2, 4.0)
        window.add(ratio)
        kept = [*kept, ratio][-16:]
        assert math.isclose(window.quantile(), naive_quantile(kept, 0.9, 1.0, 1.25, 8))
    window.add(float("nan"))  # ignored, as before
    window.add(-1.0)
    assert math.isclose(window.quantile(), naive_quantile(kept, 0.9, 1.0, 1.25, 8))
    reloaded = RatioWindow(size=16, q=0.9, cold_ratio=1.25, min_samples=8, floor=1.0)
    reloaded.load(window.to_list())
    assert reloaded.to_list() == window.to_list()
    for ratio in (3.0, 0.7, 1.1):
        window.add(ratio)
        reloaded.add(ratio)
    assert reloaded.quantile() == window.quantile()


def test_length_stats_high_matches_a_sort_of_its_answers() -> None:
    rng = random.Random(9)
    stats = LengthStats(100, q=0.9, size=32)
    kept: list[int] = []
    for _ in range(300):
        n = rng.choice([5, 5, 80, 400]) if rng.random() < 0.5 else rng.randrange(0, 900)
        stats.observe(n)
        kept = [*kept, n][-32:]
        ordered = sorted(kept)
        high = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        est = stats.estimate()
        assert est.high == max(est.expected, high)
    reloaded = LengthStats(100, q=0.9, size=32)
    reloaded.load_state(stats.to_state())
    assert reloaded.estimate() == stats.estimate()
    for n in (7, 700, 70):
        stats.observe(n)
        reloaded.observe(n)
    assert reloaded.estimate() == stats.estimate()
