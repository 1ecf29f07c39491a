"""Per-deployment latency model, learned online: TTFT(prompt tokens) + tokens x inter-token time.

TTFT is an exponentially weighted linear fit in the prompt length (prefill grows with the
prompt); inter-token time is an EWMA. Both start from the config's hints, entered as pseudo
observations that the live ones wash out. Their smoothing rate adapts (Trigg-Leach): `alpha`
while errors scatter around the level, up to 1 while they keep one sign (a level shift: an
incident starting or ending), so a step is followed in a few samples, not a dozen. The tail
comes from a small ring buffer of observed/predicted ratios: `high` = mean x the ratio's
quantile (default p95), so the level follows drift quickly (EWMA) while the spread stays a
measured one, not a guess.

Pure, no I/O: the router calls `observe` after each response and `predict` per candidate.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from dataclasses import dataclass
from typing import Any

DEFAULT_TTFT_MS = 600.0
DEFAULT_MS_PER_TOKEN = 25.0
DEFAULT_PREFILL_MS_PER_TOKEN = 0.05
_REF_PROMPT_TOKENS = 2000.0  # where the prior's second pseudo point sits


class RatioWindow:
    """A ring buffer of the last `size` ratios, with a sorted copy kept up to date per sample
    (a bisect and a C-speed list shift), so a quantile is one index on the decision path.

    `floor` bounds the quantile from below: 1 for observed/predicted latency (a tail never
    predicts faster than the mean), 0 for shares such as answer/max_tokens."""

    __slots__ = (
        "_buf", "_next", "_quantile", "_sorted", "cold_ratio", "floor", "min_samples", "q", "size",
    )  # fmt: skip

    def __init__(
        self,
        size: int = 128,
        q: float = 0.95,
        cold_ratio: float = 1.25,
        min_samples: int = 8,
        floor: float = 1.0,
    ) -> None:
        self.size = size
        self.q = q
        self.cold_ratio = cold_ratio
        self.min_samples = min_samples
        self.floor = floor
        self._buf: list[float] = []
        self._sorted: list[float] = []
        self._next = 0
        self._quantile = cold_ratio

    def add(self, ratio: float) -> None:
        if not math.isfinite(ratio) or ratio <= 0:
            return
        if len(self._buf) < self.size:
            self._buf.append(ratio)
        else:
            old = self._buf[self._next]
            del self._sorted[bisect_left(self._sorted, old)]
            self._buf[self._next] = ratio
        insort(self._sorted, ratio)
        self._next = (self._next + 1) % self.size
        self._quantile = self._compute_quantile()

    def __len__(self) -> int:
        return len(self._buf)

    def quantile(self) -> float:
        """The q-quantile of recent ratios, never below the floor; blended with the cold ratio
        early (computed when a ratio is added: the decision path only reads it)."""
        return self._quantile

    def _compute_quantile(self) -> float:
        ordered = self._sorted
        n = len(ordered)
        if n == 0:
            return self.cold_ratio
        value = max(self.floor, ordered[min(n - 1, int(self.q * n))])
        if n < self.min_samples:  # too few to trust: lean on the cold-start spread
            w = n / self.min_samples
            value = w * value + (1.0 - w) * max(value, self.cold_ratio)
        return value

    def mean(self) -> float:
        return sum(self._buf) / len(self._buf) if self._buf else self.cold_ratio

    def to_list(self) -> list[float]:
        # oldest first, so a reload keeps the same eviction order
        return self._buf[self._next :] + self._buf[: self._next]

    def load(self, values: list[float]) -> None:
        self._buf = []
        self._sorted = []
        self._next = 0
        self._quantile = self.cold_ratio
        for v in values[-self.size :]:
            self.add(float(v))


class EwmaLine:
    """Exponentially weighted least squares y = a + b*x, shrunk toward a prior line.

    The level starts at the prior and follows the data at rate `alpha`; the slope is a ridge
    estimate pulled toward the prior slope, so a deployment only ever seen with short prompts
    keeps the configured prefill rate instead of extrapolating noise.
    """

    __slots__ = ("_coef", "a0", "alpha", "b0", "sw", "swx", "swxx", "swxy", "swy", "w0")

    SLOPE_PRIOR_WEIGHT = 0.5 * _REF_PROMPT_TOKENS**2  # like half a sample at +-2000 tokens

    def __init__(self, intercept: float, slope: float, alpha: float) -> None:
        self.a0 = intercept
        self.b0 = slope
        self.alpha = alpha
        self.w0 = 1.0  # the prior's weight on the level; decays like an old sample
        self.sw = self.swx = self.swy = self.swxx = self.swxy = 0.0
        self._coef: tuple[float, float] | None = None  # cached until the next add/load

    def add(self, x: float, y: float, rate: float | None = None) -> None:
        """One observation, weighted `rate` (default `alpha`) against what came before."""
        self._coef = None
        a = self.alpha if rate is None else rate
        keep = 1.0 - a
        self.w0 *= keep
        self.sw = self.sw * keep + a
        self.swx = self.swx * keep + a * x
        self.swy = self.swy * keep + a * y
        self.swxx = self.swxx * keep + a * x * x
        self.swxy = self.swxy * keep + a * x * y

    def coefficients(self) -> tuple[float, float]:
        if self._coef is None:
            self._coef = self._fit()
        return self._coef

    def _fit(self) -> tuple[float, float]:
        if self.sw <= 0.0:
            return self.a0, self.b0
        mean_x = self.swx / self.sw
        sxx = max(0.0, self.swxx - self.swx * mean_x)
        sxy = self.swxy - self.swx * (self.swy / self.sw)
        # Ridge toward the prior slope; a small floor keeps noise from a narrow spread of
        # prompt lengths from turning into a steep extrapolation.
        lam = self.SLOPE_PRIOR_WEIGHT * max(self.w0, 0.02)
        slope = max(0.0, (sxy + lam * self.b0) / (sxx + lam))
        level = (self.swy + self.w0 * (self.a0 + self.b0 * mean_x)) / (self.sw + self.w0)
        return max(0.0, level - slope * mean_x), slope

    def predict(self, x: float) -> float:
        a, b = self.coefficients()
        return a + b * x

    def state(self) -> list[float]:
        return [self.w0, self.sw, self.swx, self.swy, self.swxx, self.swxy]

    def load(self, values: list[float]) -> None:
        if len(values) == 6 and all(math.isfinite(v) for v in values) and values[1] >= 0:
            self._coef = None
            self.w0, self.sw, self.swx, self.swy, self.swxx, self.swxy = (float(v) for v in values)


class TrackingSignal:
    """Trigg-Leach adaptive smoothing: the rate for the next EWMA step.

    The tracking signal is the smoothed error over the smoothed absolute error (log ratios of
    observed to predicted, both smoothed at `alpha`): near 0 while errors scatter around the
    level, near 1 while they keep one sign. The rate is the larger of `alpha` and the signal, so
    noise is averaged as before, and a level shift (a deployment's incident starting or ending)
    is followed within a sample or two instead of the ~1/alpha samples a fixed rate needs, the
    time in which requests are sent on the old level. Not persisted: it describes the last few
    samples only, and a restarted model starts from the cold-start spread again.
    """

    __slots__ = ("abs_error", "alpha", "error")

    def __init__(self, alpha: float, spread: float) -> None:
        self.alpha = alpha
        self.error = 0.0
        # the absolute error expected before any is measured (the cold-start spread): a first
        # sample off the config's hint moves the level by more than alpha, not all the way
        self.abs_error = spread

    def rate(self, observed: float, predicted: float) -> float:
        if observed <= 0 or predicted <= 0:
            return self.alpha
        r = math.log(observed / predicted)
        self.error += self.alpha * (r - self.error)
        self.abs_error += self.alpha * (abs(r) - self.abs_error)
        if self.abs_error <= 0:
            return self.alpha
        return max(self.alpha, min(1.0, abs(self.error) / self.abs_error))


@dataclass(slots=True)
class LatencyPrediction:
    """Predicted ms: `*_ms` is the expectation, `*_high_ms` the tail an SLO is judged on."""

    ttft_ms: float
    ttft_high_ms: float
    total_ms: float
    total_high_ms: float
    queue_wait_ms: float = 0.0  # part of the TTFT spent waiting for an engine slot

    def judged_ms(self, stream: bool) -> float:
        """What an SLO is checked against: TTFT for a stream, total time otherwise."""
        return self.ttft_high_ms if stream else self.total_high_ms

    def expected_ms(self, stream: bool) -> float:
        return self.ttft_ms if stream else self.total_ms


class LatencyModel:
    """One deployment's learned latency: TTFT line over prompt tokens, EWMA inter-token time."""

    __slots__ = (
        "_itl_ms",
        "_itl_track",
        "_ttft",
        "_ttft_track",
        "alpha",
        "last_observed",
        "prior_ms_per_token",
        "prior_prefill_ms_per_token",
        "prior_ttft_ms",
        "samples",
        "total_ratios",
        "ttft_ratios",
    )

    def __init__(
        self,
        ttft_ms: float | None = None,
        ms_per_token: float | None = None,
        prefill_ms_per_token: float | None = None,
        *,
        alpha: float = 0.15,
        quantile: float = 0.95,
        window: int = 128,
        adaptive: bool = True,
    ) -> None:
        self.prior_ttft_ms = DEFAULT_TTFT_MS if ttft_ms is None else float(ttft_ms)
        self.prior_ms_per_token = (
            DEFAULT_MS_PER_TOKEN if ms_per_token is None else float(ms_per_token)
        )
        self.prior_prefill_ms_per_token = (
            DEFAULT_PREFILL_MS_PER_TOKEN
            if prefill_ms_per_token is None
            else float(prefill_ms_per_token)
        )
        self.alpha = alpha
        self._ttft = EwmaLine(self.prior_ttft_ms, self.prior_prefill_ms_per_token, alpha)
        self._itl_ms = self.prior_ms_per_token
        # None: a fixed rate (alpha), as before the adaptive one
        self.ttft_ratios = RatioWindow(window, quantile)
        spread = math.log(self.ttft_ratios.cold_ratio)
        self._ttft_track = TrackingSignal(alpha, spread) if adaptive else None
        self._itl_track = TrackingSignal(alpha, spread) if adaptive else None
        self.total_ratios = RatioWindow(window, quantile)
        self.samples = 0
        self.last_observed: float | None = None  # caller's clock (monotonic seconds)

    @property
    def ms_per_token(self) -> float:
        return self._itl_ms

    def ttft_coefficients(self) -> tuple[float, float]:
        return self._ttft.coefficients()

    def predict(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        high_completion_tokens: int | None = None,
        ms_per_token: float | None = None,
        extra_ttft_ms: float = 0.0,
        extra_ttft_high_ms: float | None = None,
    ) -> LatencyPrediction:
        """Expected and tail latency; `ms_per_token`/`extra_ttft_ms` let a load hook override.

        `extra_ttft_ms` (a queue wait) adds to the TTFT; its own tail, `extra_ttft_high_ms`,
        adds to the TTFT's tail (default: scaled like the TTFT).

        `high_completion_tokens` (a long answer) widens the total's tail. Speed noise and
        answer length are independent, so their excesses add in quadrature rather than
        multiply: a p95 speed times a p90 length would be a far rarer (pricier) event.
        """
        engine_ttft = self._ttft.predict(float(prompt_tokens))
        ttft = engine_ttft + extra_ttft_ms
        ratio = self.ttft_ratios.quantile()
        ttft_high = (
            ttft * ratio
            if extra_ttft_high_ms is None
            else engine_ttft * ratio + max(extra_ttft_high_ms, extra_ttft_ms)
        )
        itl = self._itl_ms if ms_per_token is None else ms_per_token
        total = ttft + completion_tokens * itl
        total_high = total * self.total_ratios.quantile()
        if high_completion_tokens is not None and high_completion_tokens > completion_tokens:
            longer = (high_completion_tokens - completion_tokens) * itl
            total_high = total + math.hypot(total_high - total, longer)
        return LatencyPrediction(
            ttft_ms=ttft,
            ttft_high_ms=ttft_high,
            total_ms=total,
            total_high_ms=total_high,
            queue_wait_ms=extra_ttft_ms,
        )

    def predict_prior(self, prompt_tokens: int, completion_tokens: int) -> LatencyPrediction:
        """What the config alone predicts (cold-start spread), for drifting back when stale."""
        ttft = self.prior_ttft_ms + self.prior_prefill_ms_per_token * prompt_tokens
        total = ttft + completion_tokens * self.prior_ms_per_token
        cold = self.ttft_ratios.cold_ratio
        return LatencyPrediction(ttft, ttft * cold, total, total * cold)

    def observe_ttft(self, prompt_tokens: int, ttft_ms: float, *, now: float | None = None) -> None:
        """Learn a stream's TTFT the moment its first chunk arrives (seconds before its end)."""
        if ttft_ms < 0 or not math.isfinite(ttft_ms):
            return
        pred = self._ttft.predict(float(prompt_tokens))
        if pred > 0:
            self.ttft_ratios.add(ttft_ms / pred)
        self._learn_ttft(prompt_tokens, ttft_ms, pred)
        if now is not None:
            self.last_observed = now

    def observe(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        total_ms: float,
        ttft_ms: float | None = None,
        *,
        now: float | None = None,
        ms_per_token: float | None = None,
        ttft_learned: bool = False,
    ) -> None:
        """Learn from one finished response. Without a TTFT (non-stream), split the error.

        `ttft_learned`: its TTFT already went through `observe_ttft` when the first chunk came.

        A non-stream response only tells the total; the model's error is shared between TTFT
        and inter-token time in proportion to their predicted parts, so a deployment that
        slows down uniformly is learned correctly from either kind of response.
        """
        if total_ms <= 0 or not math.isfinite(total_ms):
            return
        n = max(0, completion_tokens)
        pred = self.predict(prompt_tokens, n, ms_per_token=ms_per_token)
        if ttft_ms is not None and 0 <= ttft_ms <= total_ms:
            ttft_obs = ttft_ms
            itl_obs = (total_ms - ttft_ms) / (n - 1) if n > 1 else None
        else:
            error = total_ms - pred.total_ms
            share = pred.ttft_ms / pred.total_ms if pred.total_ms > 0 else 1.0
            ttft_obs = max(0.0, pred.ttft_ms + error * share)
            itl_obs = (
                max(0.0, (pred.total_ms - pred.ttft_ms + error * (1 - share)) / n) if n else None
            )
        if pred.total_ms > 0:
            self.total_ratios.add(total_ms / pred.total_ms)
        if not ttft_learned:
            if pred.ttft_ms > 0:
                self.ttft_ratios.add(ttft_obs / pred.ttft_ms)
            self._learn_ttft(prompt_tokens, ttft_obs, pred.ttft_ms)
        # With a load-dependent speed supplied from outside, the EWMA stays the unloaded figure.
        if itl_obs is not None and ms_per_token is None:
            track = self._itl_track
            rate = self.alpha if track is None else track.rate(itl_obs, self._itl_ms)
            self._itl_ms += rate * (itl_obs - self._itl_ms)
        self.samples += 1
        if now is not None:
            self.last_observed = now

    def _learn_ttft(self, prompt_tokens: int, ttft_ms: float, predicted_ms: float) -> None:
        track = self._ttft_track
        rate = None if track is None else track.rate(ttft_ms, predicted_ms)
        self._ttft.add(float(prompt_tokens), ttft_ms, rate)

    def to_state(self) -> dict[str, Any]:
        return {
            "v": 1,
            "ttft_line": self._ttft.state(),
            "itl_ms": self._itl_ms,
            "ttft_ratios": self.ttft_ratios.to_list(),
            "total_ratios": self.total_ratios.to_list(),
            "samples": self.samples,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore learned figures (from `to_state`); unknown or bad state leaves the prior."""
        if state.get("v") != 1:
            return
        try:
            self._ttft.load([float(x) for x in state.get("ttft_line", [])])
            itl = float(state.get("itl_ms", self._itl_ms))
            if math.isfinite(itl) and itl >= 0:
                self._itl_ms = itl
            self.ttft_ratios.load([float(x) for x in state.get("ttft_ratios", [])])
            self.total_ratios.load([float(x) for x in state.get("total_ratios", [])])
            self.samples = int(state.get("samples", 0))
        except (TypeError, ValueError):
            return
