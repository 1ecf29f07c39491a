"""Batch-level drafting decision: expected accepted drafts against the wider step's cost."""

from __future__ import annotations

import pytest

from local_engine.spec_decode.step_cost import PRIOR_COST_PER_POSITION, StepCost


def test_prior_until_measured_then_the_measured_ratio() -> None:
    cost = StepCost()
    assert cost.ratio(8, 1) == 1.0
    assert cost.ratio(8, 3) == pytest.approx(1 + 2 * PRIOR_COST_PER_POSITION)
    cost.observe(8, 1, 0.020)
    cost.observe(8, 3, 0.030)
    assert cost.ratio(8, 3) == pytest.approx(1.5)
    cost.observe(8, 3, 0.040)  # EWMA moves toward new samples, not to them
    assert 1.5 < cost.ratio(8, 3) < 2.0
    assert cost.ratio(4, 3) == pytest.approx(1 + 2 * PRIOR_COST_PER_POSITION)  # per batch size
    cost.observe(2, 1, 0.020)
    cost.observe(2, 5, 0.010)  # a faster wide step (noise) never counts as cheaper than plain
    assert cost.ratio(2, 5) == 1.0


def test_one_row_probing_does_not_widen_a_big_batch() -> None:
    cost = StepCost()
    cost.observe(8, 1, 0.020)
    cost.observe(8, 3, 0.026)  # width 3 costs 1.3 plain steps: 8 rows give up 2.4 tokens
    lone = [2, 0, 0, 0, 0, 0, 0, 0]
    assert not cost.worth_drafting(lone, [1.0] * 8)  # at best 2 tokens gained
    copying = [2] * 8
    assert cost.worth_drafting(copying, [0.9] * 8)  # ~14 tokens gained
    assert not cost.worth_drafting(copying, [0.1] * 8)  # 1.6 tokens: not worth 2.4
    assert not cost.worth_drafting([0] * 8, [1.0] * 8)  # nothing proposed
