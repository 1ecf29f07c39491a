"""What a wider decode step costs, measured: the batch-level half of adaptive speculation.

In a batch, one row's drafts widen the step for every row (the step computes `1 + max drafts`
positions per row), so drafting pays only when the tokens the batch expects to gain outweigh
what the wider step costs all of its rows. `StepCost` learns step time per (rows, width) from
the engine's own steps; `worth_drafting` compares the expected accepted tokens with the plain
tokens the extra time would have produced. Alone (one row) the per-row controller decides.
"""

from __future__ import annotations

from collections.abc import Sequence

# Until a (rows, width) pair is measured: each extra position costs this share of a plain step.
PRIOR_COST_PER_POSITION = 0.15
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
        """Time of a `width`-position step over a plain one, at this batch size (>= 1)."""
        if width <= 1:
            return 1.0
        plain = self._seconds.get((rows, 1))
        wide = self._seconds.get((rows, width))
        if plain is None or wide is None:
            return 1.0 + PRIOR_COST_PER_POSITION * (width - 1)
        return max(1.0, wide / plain)

    def worth_drafting(self, drafts: Sequence[int], acceptance: Sequence[float]) -> bool:
        """Whether a step with these per-row draft lengths beats a plain one, in expectation.

        Gain: the drafts the rows expect to have accepted (length x smoothed acceptance).
        Cost: the plain tokens the batch gives up while the wider step runs,
        `rows x (ratio - 1)`.
        """
        rows = len(drafts)
        width = 1 + max(drafts, default=0)
        if width <= 1:
            return False
        gain = sum(n * a for n, a in zip(drafts, acceptance, strict=True))
        return gain > rows * (self.ratio(rows, width) - 1.0)
