"""Batch-level drafting decision: expected accepted drafts against the wider step's cost."""

from __future__ import annotations

import pytest

from local_engine.spec_decode.step_cost import StepCost


def test_prior_until_measured_then_the_measured_ratio() -> None:
    cost = StepCost()
    assert cost.ratio(8, 1) == 1.0
    assert cost.ratio(8, 3) == pytest.approx(1 + 2 * 0.32)  # prior: 0.04 per row per position
    assert cost.ratio(1, 11) == pytest.approx(1 + 10 * 0.04)
    assert cost.ratio(32, 3) == pytest.approx(1 + 2 * 0.4)  # capped
    cost.observe(8, 1, 0.020)
    cost.observe(8, 3, 0.030)
    assert cost.ratio(8, 3) == pytest.approx(1.5)
    cost.observe(8, 3, 0.040)  # EWMA moves toward new samples, not to them
    assert 1.5 < cost.ratio(8, 3) < 2.0
    assert cost.ratio(4, 3) == pytest.approx(1 + 2 * 0.16)  # not measured at 4 rows: the prior
    cost.observe(2, 1, 0.020)
    cost.observe(2, 5, 0.010)  # a faster wide step (noise) never counts as cheaper than plain
    assert cost.ratio(2, 5) == 1.0


def widths(drafts: list[list[int]]) -> set[int]:
    return {len(d) for d in drafts}


def test_one_row_probing_does_not_widen_a_big_batch() -> None:
    cost = StepCost()
    cost.observe(8, 1, 0.020)
    cost.observe(8, 3, 0.026)  # width 3 costs 1.3 plain steps: 8 rows give up 2.4 tokens
    lone = [[7, 7], [], [], [], [], [], [], []]
    assert widths(cost.best_drafts(lone, [1.0] * 8)) == {0}  # at best 2 tokens, 1/8 counted
    copying = [[1, 2]] * 8
    assert widths(cost.best_drafts(copying, [0.9] * 8)) == {2}  # ~13.7 tokens gained
    assert widths(cost.best_drafts(copying, [0.1] * 8)) == {0}  # ~0.9 tokens: not worth it
    assert widths(cost.best_drafts([[]] * 8, [1.0] * 8)) == {0}  # nothing proposed
    # half the rows copying: their gain counts half, while the wider step slows all eight
    half = [[1, 2]] * 4 + [[]] * 4
    assert widths(cost.best_drafts(half, [0.5] * 8)) == {0}
    assert widths(cost.best_drafts(half, [1.0] * 8)) == {0, 2}


def test_the_width_that_pays_best_is_chosen() -> None:
    cost = StepCost()
    for width, ms in ((1, 100.0), (3, 160.0), (5, 220.0), (9, 600.0)):
        cost.observe(8, width, ms / 1000)
    long_drafts = [list(range(8))] * 8
    # a = 0.98: width 5 gives (8 + 8 x 3.8) / 2.2 = 17.5 tokens per plain-step time; 3: 14.8;
    # 9 (measured 6x): 10.2 — so drafts are cut to 4
    assert widths(cost.best_drafts(long_drafts, [0.98] * 8)) == {4}
    # low acceptance: the extra positions are not worth their cost
    assert widths(cost.best_drafts(long_drafts, [0.2] * 8)) == {0}
    # drafts shorter than the width are kept whole, never padded
    mixed = [[1, 2, 3, 4, 5, 6], [1]] + [[1, 2, 3, 4, 5, 6]] * 6
    assert widths(cost.best_drafts(mixed, [0.98] * 8)) == {4, 1}
