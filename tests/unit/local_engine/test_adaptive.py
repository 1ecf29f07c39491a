from local_engine.config import SpeculativeConfig
from local_engine.spec_decode.adaptive import AdaptiveSpeculation
from local_engine.spec_decode.metrics import SpecDecodeCounters


def cfg(**kw: object) -> SpeculativeConfig:
    base = {
        "num_speculative_tokens": 8,
        "min_acceptance": 0.3,
        "acceptance_ewma_alpha": 0.5,
        "pause_steps": 4,
        "max_pause_steps": 16,
    }
    base.update(kw)
    return SpeculativeConfig.model_validate(base)


def test_full_drafts_while_acceptance_is_high() -> None:
    a = AdaptiveSpeculation(cfg())
    for _ in range(5):
        assert a.num_drafts() == 8
        a.record(8, 8)


def test_draft_length_shrinks_with_acceptance() -> None:
    a = AdaptiveSpeculation(cfg())
    a.record(8, 4)  # ewma 0.75
    assert a.num_drafts() == 6


def test_pauses_when_acceptance_drops_and_backs_off() -> None:
    a = AdaptiveSpeculation(cfg())
    a.record(8, 0)
    a.record(8, 0)  # ewma 0.25 < 0.3 -> pause 4 steps
    assert [a.num_drafts() for _ in range(4)] == [0, 0, 0, 0]
    assert a.num_drafts() > 0  # probe
    a.record(8, 0)  # fails again: the next pause is twice as long
    assert [a.num_drafts() for _ in range(8)] == [0] * 8
    assert a.num_drafts() > 0
    a.record(8, 8)  # a good probe resumes and resets the back-off
    assert a.next_pause == 4
    assert a.paused_steps == 12


def test_non_adaptive_always_drafts_the_maximum() -> None:
    a = AdaptiveSpeculation(cfg(adaptive=False))
    for _ in range(10):
        a.record(8, 0)
        assert a.num_drafts() == 8


def test_counters_match_vllm_semantics() -> None:
    c = SpecDecodeCounters()
    c.observe(4, 2)
    c.observe(2, 2)
    c.observe(0, 0)  # no drafts: not a verify step
    s = c.snapshot()
    assert (s.num_drafts, s.num_draft_tokens, s.num_accepted_tokens) == (2, 6, 4)
    assert s.accepted_per_position == (2, 2, 0, 0)
    assert s.acceptance_rate == 4 / 6
    assert s.mean_acceptance_length == 3.0


def test_a_batch_needs_the_higher_floor() -> None:
    a = AdaptiveSpeculation(cfg(min_acceptance_batched=0.6))
    a.record(8, 3)  # ewma 0.6875: drafts alone and in a batch
    assert a.num_drafts(batched=True) > 0
    a.record(8, 2)  # ewma ~0.47: still above the single-row floor, below the batch floor
    assert a.num_drafts(batched=True) == 0
    assert a.num_drafts(batched=False) > 0
