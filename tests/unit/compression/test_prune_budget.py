"""The aggressive mode's pruner reads a bounded amount of each request, longest passages first.

Its model reads a few hundred tokens a second per core, one request at a time, and a request
abandoned by its client runs on: 10,000 short turns (a 4 MB body) held it, and with it every
other tenant's aggressive request, for minutes.
"""

from __future__ import annotations

import random

from gateway.compression import CompressionOptions, PromptCompressor
from gateway.compression.compressor import MAX_PRUNED_TOKENS, MIN_PRUNE_CALL_TOKENS
from gateway.compression.tokens import TiktokenCounter
from tests.unit.compression.conftest import filler_passage


class CountingPruner:
    """Drops every fourth word, and counts what it was given to read."""

    def __init__(self, counter: TiktokenCounter) -> None:
        self.counter = counter
        self.calls = 0
        self.tokens = 0
        self.read: list[str] = []

    def prune(self, text: str, fraction: float, protect: frozenset[str]) -> str:
        self.calls += 1
        self.tokens += max(self.counter.count(text), MIN_PRUNE_CALL_TOKENS)
        self.read.append(text)
        return " ".join(w for k, w in enumerate(text.split()) if k % 4 != 3)


AGGRESSIVE = CompressionOptions(mode="aggressive", min_prompt_tokens=0, min_message_tokens=0)


def test_ten_thousand_turns_are_pruned_within_the_budget(counter: TiktokenCounter) -> None:
    rng = random.Random(3)
    msgs: list[dict[str, str]] = [
        {"role": "user", "content": "Background:\n" + filler_passage(rng, 120)}
    ]
    for i in range(5_000):
        msgs.append({"role": "user", "content": f"turn {i}: " + filler_passage(rng, 1)})
        msgs.append({"role": "assistant", "content": f"noted {i}"})
    msgs.append({"role": "user", "content": "What did the background say about the harbor?"})
    pruner = CountingPruner(counter)
    res = PromptCompressor(counter, pruner=pruner).compress(msgs, AGGRESSIVE)
    assert res.method == "aggressive"
    assert pruner.tokens <= MAX_PRUNED_TOKENS
    assert pruner.calls < MAX_PRUNED_TOKENS // MIN_PRUNE_CALL_TOKENS + 1
    assert pruner.read[0].startswith("Background")  # the longest passage first
    assert any("budget" in n for n in res.notes)


def test_a_prompt_within_the_budget_is_pruned_whole(counter: TiktokenCounter) -> None:
    rng = random.Random(4)
    msgs = [
        {"role": "user", "content": "Context:\n" + filler_passage(rng, 40)},
        {"role": "assistant", "content": "ok " + filler_passage(rng, 10)},
        {"role": "user", "content": "What about the violin?"},
    ]
    pruner = CountingPruner(counter)
    res = PromptCompressor(counter, pruner=pruner).compress(msgs, AGGRESSIVE)
    assert res.method == "aggressive"
    assert pruner.calls == 2
    assert not any("budget" in n for n in res.notes)
