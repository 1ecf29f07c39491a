"""Shared pieces for the compression tests: one real tiktoken counter, text builders."""

from __future__ import annotations

import random

import pytest

from gateway.compression import TiktokenCounter

_WORD_LIST = (
    "river castle engine protein harbor violin glacier senator tariff orbit lantern meadow "
    "copper falcon archive mineral canyon ballot vaccine rocket quartz bishop harvest signal"
)
WORDS = _WORD_LIST.split()


@pytest.fixture(scope="session")
def counter() -> TiktokenCounter:
    return TiktokenCounter()


def filler_passage(rng: random.Random, sentences: int = 8) -> str:
    """Prose of random topic words: many sentences, none about the test's question."""
    out = []
    for _ in range(sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 16))]
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out)


def random_messy_text(rng: random.Random) -> str:
    """Text with every kind of whitespace mess, fences, JSON and inline code mixed in."""
    pieces = []
    for _ in range(rng.randint(1, 12)):
        kind = rng.random()
        if kind < 0.45:
            indent = rng.choice(["", "  ", "    ", "\t"])
            words = [rng.choice(WORDS) for _ in range(rng.randint(1, 9))]
            sep = rng.choice([" ", "  ", " \t ", "   "])
            pieces.append(indent + sep.join(words) + rng.choice(["", " ", "  ", "\t", "\r"]))
        elif kind < 0.6:
            pieces.append(rng.choice(["", " ", "\t", "   "]))
        elif kind < 0.72:
            pieces.append("```py\nx  =  1   \n\n\n\ty = [ 1,  2 ]\n```")
        elif kind < 0.84:
            pieces.append('{\n  "a": [1,  2.50, 1e3],\n  "b": "x  \\"y\\"  z",\n  "a": null\n}')
        elif kind < 0.92:
            pieces.append("use `a   b` here   please")
        else:
            pieces.append("[not json] {also not")
    return rng.choice(["\n", "\n\n", "\n\n\n", "\r\n"]).join(pieces)
