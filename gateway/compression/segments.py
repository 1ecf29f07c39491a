"""Split message text into prose, fenced code and JSON segments, losslessly.

`"".join(seg.text for seg in split_segments(s)) == s` always holds: compressors rewrite the
prose segments and leave the others alone (code) or rewrite them exactly (JSON minification).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

SegmentKind = Literal["text", "code", "json", "keep"]  # "keep": prose not to be cut

_FENCE_OPEN = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[^\n]*$", re.MULTILINE)
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
    that start a line and end one, then prose."""
    out: list[Segment] = []
    for kind, piece in _split_fences(text):
        if kind == "code":
            out.append(Segment("code", piece))
        else:
            out.extend(_split_json(piece))
    return out


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
            r"^[ \t]{0,3}" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}[ \t]*$",
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
