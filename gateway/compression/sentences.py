"""Sentence spans of a paragraph: rule-based, abbreviation-aware, and exact (spans, not copies)."""

from __future__ import annotations

import re

_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*\s+")
_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof st jr sr vs etc e.g i.e inc ltd co corp no fig gen col capt lt sgt rev
    gov sen rep jan feb mar apr jun jul aug sep sept oct nov dec mt ft u.s u.k a.m p.m
    approx dept est vol pp ch al""".split()  # noqa: SIM905
)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence; lines are always separate; whitespace between is skipped."""
    spans: list[tuple[int, int]] = []
    line_start = 0
    for line in text.split("\n"):
        _line_spans(line, line_start, spans)
        line_start += len(line) + 1
    return spans


def _line_spans(line: str, offset: int, spans: list[tuple[int, int]]) -> None:
    start = len(line) - len(line.lstrip())
    if start >= len(line):
        return
    for m in _BOUNDARY.finditer(line):
        end = m.end()
        if end >= len(line) or not _starts_sentence(line[end]):
            continue
        if line[m.start()] == "." and _is_abbreviation(line, m.start()):
            continue
        piece_end = len(line[:end].rstrip())
        if piece_end > start:
            spans.append((offset + start, offset + piece_end))
        start = end
    tail_end = len(line.rstrip())
    if tail_end > start:
        spans.append((offset + start, offset + tail_end))


def _starts_sentence(ch: str) -> bool:
    return ch.isupper() or ch.isdigit() or ch in "\"'“‘([-*•"


def _is_abbreviation(line: str, dot: int) -> bool:
    word_start = dot
    while word_start > 0 and (line[word_start - 1].isalpha() or line[word_start - 1] == "."):
        word_start -= 1
    word = line[word_start:dot].lower()
    if len(word) == 1 and word.isalpha():
        return True  # an initial: "J. Smith"
    return word in _ABBREVIATIONS
