"""A remembered prefix is reused only while it still holds what the new question needs.

Balanced cuts a document against the question of its turn. Reusing that cut on a later turn
keeps the provider's prompt cache warm, but a follow-up about another part of the document got
the first question's cut: the sentence that answered it was gone (found by hunter h4,
session 8). Now the prefix is reused when it holds the sentences a fresh compression keeps for
the new question, and the history is compressed again otherwise."""

from __future__ import annotations

import random

from gateway.compression import CompressionOptions, PrefixMemory, PromptCompressor
from gateway.compression.tokens import TiktokenCounter
from tests.unit.compression.conftest import filler_passage

LANTERN = "The lighthouse keeper Margarethe Voss repainted the lantern room in 1911."
VAULT = "The vault launch code is 7734-ALPHA."
BALANCED = CompressionOptions(mode="balanced", min_prompt_tokens=0)


def _turn1() -> list[dict[str, str]]:
    rng = random.Random(11)
    docs = [filler_passage(rng, 8) for _ in range(10)]
    docs.insert(3, LANTERN)
    docs.insert(8, VAULT)
    return [
        {"role": "user", "content": "\n\n".join(docs)},
        {"role": "assistant", "content": "Read."},
        {"role": "user", "content": "Who repainted the lantern room?"},
    ]


def _follow_up(first: list[dict[str, str]], question: str) -> list[dict[str, str]]:
    return [
        *first,
        {"role": "assistant", "content": "Margarethe Voss."},
        {"role": "user", "content": question},
    ]


def test_a_follow_up_about_another_part_gets_the_history_cut_for_it(
    counter: TiktokenCounter,
) -> None:
    compressor = PromptCompressor(counter, memory=PrefixMemory())
    first = _turn1()
    sent1 = compressor.compress(first, BALANCED, scope="t").messages
    assert LANTERN in sent1[0]["content"] and VAULT not in sent1[0]["content"]
    second = _follow_up(first, "What is the vault launch code?")
    res = compressor.compress(second, BALANCED, scope="t")
    assert VAULT in res.messages[0]["content"]
    assert res.method == "balanced"
    # And what was sent now is what the next turn reuses.
    third = [
        *second,
        {"role": "assistant", "content": "7734-ALPHA."},
        {"role": "user", "content": "Is the vault launch code 7734-ALPHA?"},
    ]
    again = compressor.compress(third, BALANCED, scope="t")
    assert again.messages[: len(res.messages)] == res.messages


def test_a_follow_up_on_the_same_part_still_reuses_the_prefix(counter: TiktokenCounter) -> None:
    compressor = PromptCompressor(counter, memory=PrefixMemory())
    first = _turn1()
    sent1 = compressor.compress(first, BALANCED, scope="t").messages
    second = _follow_up(first, "In which year did Margarethe Voss repaint the lantern room?")
    res = compressor.compress(second, BALANCED, scope="t")
    assert res.messages[: len(sent1)] == sent1


def test_remember_with_replace_overwrites_and_keeps_the_byte_count() -> None:
    memory = PrefixMemory()
    originals = [{"role": "user", "content": "a long document"}]
    memory.remember("s", originals, [{"role": "user", "content": "cut one way"}])
    memory.remember("s", originals, [{"role": "user", "content": "other"}])
    assert memory.recall("s", originals) == [{"role": "user", "content": "cut one way"}]
    memory.remember("s", originals, [{"role": "user", "content": "other"}], replace=True)
    assert memory.recall("s", originals) == [{"role": "user", "content": "other"}]
    assert memory._bytes == len(b'{"role":"user","content":"other"}')
