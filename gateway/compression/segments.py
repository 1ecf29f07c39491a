"""Split message text into prose, fenced code, JSON and table segments, losslessly.

`"".join(seg.text for seg in split_segments(s)) == s` always holds: compressors rewrite the
prose segments and leave the others alone (code) or rewrite them exactly (JSON minification).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

# "keep": prose not to be cut; "table": rows of data (markdown pipes, CSV, TSV), kept whole.
SegmentKind = Literal["text", "code", "json", "table", "keep"]

# Any indentation: a fence nested under a list item is indented by the item's width (4+).
_FENCE_OPEN = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*$", re.MULTILINE)
_JSON_START = re.compile(r"^[ \t]*[\[{]", re.MULTILINE)
_DECODER = json.JSONDecoder(parse_constant=lambda name: _reject(name))


def _reject(name: str) -> None:
    # NaN / Infinity are not JSON; a span holding them is left as prose.
    raise ValueError(name)


@dataclass(frozen=True, slots=True)
class Segment:
    kind: SegmentKind
    text: str


def split_segments(text: str) -> list[Segment]:
    """Fenced code blocks (``` or ~~~, an unclosed fence runs to the end), then JSON values
    that start a line and end one, then tables, then prose."""
    out: list[Segment] = []
    for kind, piece in _split_fences(text):
        if kind == "code":
            out.append(Segment("code", piece))
            continue
        for seg in _split_json(piece):
            out.extend(_split_tables(seg.text) if seg.kind == "text" else [seg])
    return out


_TABLE_RULE = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)+\|?[ \t]*$")
MIN_TABLE_ROWS = 3  # a CSV / TSV block: at least this many lines with the same cell count


def _split_tables(text: str) -> list[Segment]:
    """Markdown pipe tables (a header row, a rule row, rows holding a pipe), and CSV / TSV
    blocks (3+ lines with the same number of tabs, or of commas when 2 or more: prose lines
    with one comma each are common). A row dropped from a table changes every total, count
    and comparison over it, so a table is never cut into sentences."""
    if "|" not in text and "," not in text and "\t" not in text:
        return [Segment("text", text)]
    lines = text.split("\n")
    spans: list[tuple[int, int]] = []  # [first, last) line indices
    i = 0
    while i < len(lines):
        end = _table_end(lines, i)
        if end > i:
            spans.append((i, end))
            i = end
        else:
            i += 1
    if not spans:
        return [Segment("text", text)]
    starts = [0]
    for ln in lines:
        starts.append(starts[-1] + len(ln) + 1)
    out: list[Segment] = []
    pos = 0
    for first, last in spans:
        a, b = starts[first], starts[last] - 1  # the block, without its final newline
        if a > pos:
            out.append(Segment("text", text[pos:a]))
        out.append(Segment("table", text[a:b]))
        pos = b
    if pos < len(text):
        out.append(Segment("text", text[pos:]))
    return out


def _table_end(lines: list[str], i: int) -> int:
    """The end of a table starting at line `i`, or `i` when none starts there."""
    if "|" in lines[i] and i + 1 < len(lines) and _TABLE_RULE.match(lines[i + 1]):
        end = i + 2
        while end < len(lines) and "|" in lines[end] and lines[end].strip():
            end += 1
        return end
    for sep, least in (("\t", 1), (",", 2)):
        cells = lines[i].count(sep)
        if cells < least or not lines[i].strip(" \t"):
            continue
        end = i + 1
        while end < len(lines) and lines[end].count(sep) == cells and lines[end].strip(" \t"):
            end += 1
        if end - i >= MIN_TABLE_ROWS:
            return end
    return i


def _split_fences(text: str) -> list[tuple[SegmentKind, str]]:
    if "```" not in text and "~~~" not in text:
        return [("text", text)]
    parts: list[tuple[SegmentKind, str]] = []
    pos = 0
    while True:
        m = _FENCE_OPEN.search(text, pos)
        if m is None:
            break
        fence = m.group(1)
        closer = re.compile(
            r"^[ \t]*" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}[ \t]*$",
            re.MULTILINE,
        )
        end_match = closer.search(text, m.end() + 1) if m.end() < len(text) else None
        end = len(text) if end_match is None else end_match.end()
        if m.start() > pos:
            parts.append(("text", text[pos : m.start()]))
        parts.append(("code", text[m.start() : end]))
        pos = end
    if pos < len(text):
        parts.append(("text", text[pos:]))
    return parts


def _split_json(text: str) -> list[Segment]:
    out: list[Segment] = []
    pos = 0
    search_from = 0
    while True:
        m = _JSON_START.search(text, search_from)
        if m is None:
            break
        start = m.end() - 1
        end = _json_end(text, start)
        if end is None:
            search_from = m.end()
            continue
        if start > pos:
            out.append(Segment("text", text[pos:start]))
        out.append(Segment("json", text[start:end]))
        pos = search_from = end
    if pos < len(text):
        out.append(Segment("text", text[pos:]))
    return out


def _json_end(text: str, start: int) -> int | None:
    """End of a JSON object/array starting at `start` that finishes its line, else None."""
    try:
        _value, end = _DECODER.raw_decode(text, start)
    except (ValueError, RecursionError):
        return None
    line_end = text.find("\n", end)
    rest = text[end:] if line_end < 0 else text[end:line_end]
    if rest.strip():
        return None
    return end
