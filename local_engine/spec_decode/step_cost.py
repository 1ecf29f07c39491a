"""What a wider decode step costs, measured: the batch-level half of adaptive speculation.

In a batch, one row's drafts widen the step for every row (the step computes `1 + max drafts`
positions per row), so drafting pays only when the tokens the batch expects to gain outweigh
what the wider step costs all of its rows. `StepCost` learns step time per (rows, width) from
the engine's own steps; `best_drafts` picks the step width with the most expected tokens per
unit of time (or a plain step). Alone (one row) the per-row controller decides.
"""

from __future__ import annotations

from collections.abc import Sequence

# Until a (rows, width) pair is measured, each extra position costs this share of a plain step
# per row in the batch, up to the cap: on this 2-core CPU, 8 rows x width 3 measured 1.6 plain
# steps (0.3 per position), 4 rows x width 5 1.4 (0.1 per position).
PRIOR_COST_PER_POSITION_PER_ROW = 0.04
PRIOR_COST_PER_POSITION_MAX = 0.4
ALPHA = 0.1  # EWMA weight of a new step time


class StepCost:
    def __init__(self) -> None:
        self._seconds: dict[tuple[int, int], float] = {}

    def observe(self, rows: int, width: int, seconds: float) -> None:
        if seconds <= 0:
            return
        key = (rows, width)
        old = self._seconds.get(key)
        self._seconds[key] = seconds if old is None else old + ALPHA * (seconds - old)

    def ratio(self, rows: int, width: int) -> float:
        """Time of a `width`-position step over a plain one, at this batch size (>= 1).

        Measured where this (rows, width) has run; between measured widths, interpolated;
        past the widest measured, extended at the steeper of its average slope and the prior's.
        """
        if width <= 1:
            return 1.0
        prior_slope = min(PRIOR_COST_PER_POSITION_MAX, PRIOR_COST_PER_POSITION_PER_ROW * rows)
        plain = self._seconds.get((rows, 1))
        if plain is None:
            return 1.0 + prior_slope * (width - 1)
        known = sorted(
            (w, max(1.0, t / plain)) for (r, w), t in self._seconds.items() if r == rows and w > 1
        )
        below: tuple[int, float] = (1, 1.0)
        for w, ratio in known:
            if w == width:
                return ratio
            if w > width:  # between two measured widths
                (w0, r0), (w1, r1) = below, (w, ratio)
                return r0 + (r1 - r0) * (width - w0) / (w1 - w0)
            below = (w, ratio)
        w0, r0 = below
        slope = prior_slope if w0 == 1 else max(prior_slope, (r0 - 1.0) / (w0 - 1))
        return r0 + slope * (width - w0)

    def best_drafts(
        self, drafts: Sequence[Sequence[int]], acceptance: Sequence[float]
    ) -> list[list[int]]:
        """The drafts to verify in this batch step: every row's cut to the width that yields
        the most expected tokens per unit of step time, or none when a plain step wins.

        A row with `k` drafts and smoothed acceptance `a` expects `a + a^2 + ... + a^k` of them
        accepted (acceptance stops at the first miss). Those tokens count in proportion to the
        share of rows that draft: the batch's wall time is set by its slowest rows, so tokens a
        minority gains mostly shorten their own requests while the wider step slows every row.
        """
        rows = len(drafts)
        longest = max((len(d) for d in drafts), default=0)
        drafting = sum(1 for d in drafts if d)
        pairs = list(zip(drafts, acceptance, strict=True))
        best_width, best_rate = 1, float(rows)  # a plain step: one token per row
        for width in range(2, longest + 2):
            gain = sum(_expected_accepted(min(len(d), width - 1), a) for d, a in pairs)
            rate = (rows + gain * drafting / rows) / self.ratio(rows, width)
            if rate > best_rate:
                best_width, best_rate = width, rate
        return [list(d[: best_width - 1]) for d in drafts]


def _expected_accepted(k: int, a: float) -> float:
    if k <= 0 or a <= 0:
        return 0.0
    if a >= 1.0:
        return float(k)
    return a * (1 - a**k) / (1 - a)
