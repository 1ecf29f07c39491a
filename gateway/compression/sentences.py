"""Sentence spans of a paragraph: rule-based, abbreviation-aware, and exact (spans, not copies)."""

from __future__ import annotations

import re

# Latin-style ends need a space after them; CJK full-width ends do not (no spaces there).
# Also the full stops of Devanagari (danda, double danda), Arabic (question mark), Urdu,
# Armenian, Ethiopic and Myanmar, written with a space after them.
_SPACED_ENDS = ".!?…\u0964\u0965\u061f\u06d4\u0589\u1362\u1367\u1368\u104b"
_BOUNDARY = re.compile(rf"[{_SPACED_ENDS}]+[\"'”’)\]»]*\s+|[。！？]+[\"'”’」』）)\]]*\s*")
_CJK_ENDS = "。！？"
_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof st jr sr vs etc e.g i.e inc ltd co corp no fig gen col capt lt sgt rev
    gov sen rep jan feb mar apr jun jul aug sep sept oct nov dec mt ft u.s u.k a.m p.m
    approx dept est vol pp ch al""".split()  # noqa: SIM905
)


MAX_UNIT_CHARS = 400  # longer "sentences" (run-on text, lists without spaces) are cut further
_SOFT_BREAKS = (
    re.compile(rf"[.!?;](?=\S)|[{_SPACED_ENDS};؛]\s|[。！？；]"),
    re.compile(r"[,:)]\s|[，、：）]"),
    re.compile(r"\s"),
)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence; lines are always separate; whitespace between is skipped."""
    spans: list[tuple[int, int]] = []
    line_start = 0
    for line in text.split("\n"):
        _line_spans(line, line_start, spans)
        line_start += len(line) + 1
    if any(e - s > MAX_UNIT_CHARS for s, e in spans):
        spans = [piece for s, e in spans for piece in _cut_long(text, s, e)]
    return spans


def _cut_long(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Cut a long span near every MAX_UNIT_CHARS/2..MAX_UNIT_CHARS at the softest break."""
    out: list[tuple[int, int]] = []
    while end - start > MAX_UNIT_CHARS:
        window_lo, window_hi = start + MAX_UNIT_CHARS // 2, start + MAX_UNIT_CHARS
        cut = None
        for pattern in _SOFT_BREAKS:
            hits = [m.end() for m in pattern.finditer(text, window_lo, window_hi)]
            if hits:
                cut = hits[-1]
                break
        if cut is None:
            cut = window_hi
        piece_end = len(text[:cut].rstrip())
        out.append((start, piece_end))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if end > start:
        out.append((start, end))
    return out


def _line_spans(line: str, offset: int, spans: list[tuple[int, int]]) -> None:
    start = len(line) - len(line.lstrip())
    if start >= len(line):
        return
    for m in _BOUNDARY.finditer(line):
        end = m.end()
        if end >= len(line):
            continue
        if line[m.start()] not in _CJK_ENDS and not _starts_sentence(line[end]):
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
    # A letter of a script without case (Arabic, Hebrew, Hindi...) may start one too.
    return (ch.isalpha() and not ch.islower()) or ch.isdigit() or ch in "\"'“‘([-*•«"


def _is_abbreviation(line: str, dot: int) -> bool:
    word_start = dot
    while word_start > 0 and (line[word_start - 1].isalpha() or line[word_start - 1] == "."):
        word_start -= 1
    word = line[word_start:dot].lower()
    if len(word) == 1 and word.isalpha():
        return True  # an initial: "J. Smith"
    return word in _ABBREVIATIONS
