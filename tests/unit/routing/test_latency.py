"""LatencyModel: cold start from config, learning, drift, the tail quantile, state round trip."""

from __future__ import annotations

import math
import random
import statistics

from gateway.routing.latency import EwmaLine, LatencyModel, RatioWindow


def test_cold_start_uses_config_hints() -> None:
    model = LatencyModel(ttft_ms=200, ms_per_token=10, prefill_ms_per_token=0.1)
    pred = model.predict(prompt_tokens=1000, completion_tokens=50)
    assert pred.ttft_ms == 300
    assert pred.total_ms == 800
    # without samples the tail is the cold spread, above the mean
    assert pred.ttft_high_ms > pred.ttft_ms
    assert pred.judged_ms(stream=True) == pred.ttft_high_ms
    assert pred.judged_ms(stream=False) == pred.total_high_ms


def test_learns_true_ttft_and_inter_token_time_from_streams() -> None:
    model = LatencyModel(ttft_ms=1000, ms_per_token=50)
    rng = random.Random(1)
    for _ in range(200):
        prompt = rng.randint(100, 4000)
        n = rng.randint(20, 400)
        ttft = 80 + 0.02 * prompt
        model.observe(prompt, n, total_ms=ttft + (n - 1) * 8, ttft_ms=ttft)
    a, b = model.ttft_coefficients()
    assert abs(a - 80) < 5
    assert abs(b - 0.02) < 0.003
    assert abs(model.ms_per_token - 8) < 0.2
    pred = model.predict(2000, 100)
    assert abs(pred.total_ms - (120 + 800)) < 30


def test_non_stream_observations_track_a_uniform_slowdown() -> None:
    model = LatencyModel(ttft_ms=100, ms_per_token=10)
    for _ in range(60):
        model.observe(500, 100, total_ms=3 * (100 + 0.05 * 500 + 100 * 10))
    pred = model.predict(500, 100)
    assert abs(pred.total_ms - 3 * 1125) / (3 * 1125) < 0.05
    # also for another length: the error was shared between TTFT and inter-token time
    pred = model.predict(500, 300)
    expected = 3 * (125 + 3000)
    assert abs(pred.total_ms - expected) / expected < 0.15


def test_drift_is_followed_within_a_few_samples() -> None:
    model = LatencyModel(ttft_ms=100, ms_per_token=5)
    for _ in range(50):
        model.observe(100, 10, total_ms=150, ttft_ms=100)
    for _ in range(10):
        model.observe(100, 10, total_ms=950, ttft_ms=900)
    assert model.predict(100, 10).ttft_ms > 700


def test_tail_reflects_measured_spread() -> None:
    steady = LatencyModel(ttft_ms=100, ms_per_token=5)
    noisy = LatencyModel(ttft_ms=100, ms_per_token=5)
    rng = random.Random(2)
    for _ in range(300):
        steady.observe(100, 10, total_ms=155, ttft_ms=105)
        t = 105 * rng.choice([0.5, 1.0, 1.0, 2.0])
        noisy.observe(100, 10, total_ms=t + 50, ttft_ms=t)
    s, n = steady.predict(100, 10), noisy.predict(100, 10)
    assert s.ttft_high_ms / s.ttft_ms < 1.1
    assert n.ttft_high_ms / n.ttft_ms > 1.5


def test_ratio_window_is_bounded_and_quantile_never_below_one() -> None:
    w = RatioWindow(size=10, q=0.9, cold_ratio=1.3, min_samples=4)
    assert w.quantile() == 1.3
    for _ in range(50):
        w.add(0.5)
    assert len(w) == 10
    assert w.quantile() == 1.0
    w.add(float("nan"))
    w.add(-1)
    assert len(w) == 10


def test_ewma_line_keeps_prior_slope_when_prompts_do_not_vary() -> None:
    line = EwmaLine(intercept=500, slope=0.1, alpha=0.2)
    for _ in range(100):
        line.add(100.0, 200.0)
    a, b = line.coefficients()
    assert abs((a + b * 100) - 200) < 1
    assert b <= 0.1 + 1e-9  # no steep extrapolation from a single prompt length


def test_state_round_trip_restores_predictions() -> None:
    model = LatencyModel(ttft_ms=300, ms_per_token=20)
    for i in range(40):
        model.observe(100 + i * 10, 50, total_ms=400 + i, ttft_ms=150)
    fresh = LatencyModel(ttft_ms=300, ms_per_token=20)
    fresh.load_state(model.to_state())
    assert fresh.predict(700, 50) == model.predict(700, 50)
    assert fresh.samples == 40
    broken = LatencyModel(ttft_ms=300, ms_per_token=20)
    broken.load_state({"v": 1, "ttft_line": ["x"], "itl_ms": "nope"})
    assert broken.predict(10, 10) == LatencyModel(ttft_ms=300, ms_per_token=20).predict(10, 10)


def test_a_level_shift_is_followed_in_a_few_samples_while_noise_is_still_averaged() -> None:
    """An incident triples a deployment's TTFT. At a fixed rate (0.15) the level needs about a
    dozen samples to get there, and the requests sent meanwhile are routed on the old figure;
    errors that keep one sign raise the rate (Trigg-Leach), so three samples get most of the way.
    Errors that scatter around a steady level leave the rate near alpha: the level scatters more
    than at the fixed rate (about 6% against 3.5% with 12% noise), still half the noise."""
    rng = random.Random(3)
    shifted, fixed = LatencyModel(100, 5), LatencyModel(100, 5, adaptive=False)
    for model in (shifted, fixed):
        for _ in range(100):
            model.observe_ttft(100, 105 * rng.lognormvariate(0, 0.12))
        for _ in range(3):
            model.observe_ttft(100, 315 * rng.lognormvariate(0, 0.12))
    assert fixed.predict(100, 1).ttft_ms < 200
    assert shifted.predict(100, 1).ttft_ms > 250
    for adaptive, most in ((True, 0.07), (False, 0.04)):
        steady = LatencyModel(100, 5, adaptive=adaptive)
        levels = []
        for i in range(2000):
            steady.observe_ttft(100, 105 * rng.lognormvariate(0, 0.12))
            if i >= 100:
                levels.append(math.log(steady.predict(100, 1).ttft_ms / 105))
        assert statistics.pstdev(levels) < most


def test_a_restarted_model_keeps_its_level_at_the_first_sample() -> None:
    """The tracking signal is not saved: a restored model starts it from the cold-start spread,
    so its first sample moves the learned level like any other, not all the way to itself."""
    learned = LatencyModel(100, 5)
    for _ in range(50):
        learned.observe_ttft(100, 400.0)
    restored = LatencyModel(100, 5)
    restored.load_state(learned.to_state())
    restored.observe_ttft(100, 300.0)
    assert restored.predict(100, 1).ttft_ms > 370
