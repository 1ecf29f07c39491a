from __future__ import annotations

from gateway.routing.completion import CompletionLengths


def test_max_tokens_wins() -> None:
    est = CompletionLengths().estimate(max_tokens=77)
    assert (est.expected, est.high, est.source) == (77, 77, "max_tokens")


def test_default_then_learned_mean_and_high_quantile() -> None:
    lengths = CompletionLengths(default=256)
    assert lengths.estimate().source == "default"
    for i in range(200):
        lengths.observe(100 if i % 10 else 1000)  # 10% long answers
    est = lengths.estimate()
    assert est.source == "learned"
    assert 120 < est.expected < 300
    assert est.high == 1000


def test_state_round_trip() -> None:
    a = CompletionLengths()
    for n in (10, 20, 30, 40):
        a.observe(n)
    b = CompletionLengths()
    b.load_state(a.to_state())
    assert b.estimate() == a.estimate()
    b.load_state({"v": 1, "ewma": "bad"})
    assert b.estimate() == a.estimate()


def test_lengths_are_learned_per_prompt_band() -> None:
    lengths = CompletionLengths()
    for _ in range(40):
        lengths.observe(400, prompt_tokens=1000)  # band 512-1023
        lengths.observe(20, prompt_tokens=300)  # band 256-511
    assert lengths.estimate(prompt_tokens=900).expected == 400
    assert lengths.estimate(prompt_tokens=260).expected == 20
    # an unseen band falls back to the model as a whole
    assert 150 < lengths.estimate(prompt_tokens=5000).expected < 300
    assert lengths.estimate(max_tokens=64, prompt_tokens=900).source == "max_tokens"
    restored = CompletionLengths()
    restored.load_state(lengths.to_state())
    assert restored.estimate(prompt_tokens=900) == lengths.estimate(prompt_tokens=900)
