"""Split message text into prose, fenced code, JSON and table segments, losslessly.

`"".join(seg.text for seg in split_segments(s)) == s` always holds: compressors rewrite the
prose segments and leave the others alone (code) or rewrite them exactly (JSON minification).
"""

from __future__ import annotations

import json
import math
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
            if seg.kind != "text":
                out.append(seg)
                continue
            for part in _split_tables(seg.text):
                out.extend(_split_code(part.text) if part.kind == "text" else [part])
    return out


# Code pasted without fences (a tool's read of a file, a diff): recognised line by line.
_BULLET = re.compile(r"(?:[-*+•]|\d{1,3}[.)])\s")
_CODE_ENDS = (";", "{", "}", "(", "[", "\\", "->", "=>", "*/")
_CODE_LINE = re.compile(
    r"(?:def|async def|class) \w+\s*[(:]"
    r"|(?:if|elif|else|for|while|with|try|except|finally)\b.*:$"
    r"|(?:function|func|fn)\b\s*\w*\s*\("
    r"|(?:const|let|var) \w+\s*=[^=]"
    r"|(?:public|private|protected|static) \w"
    r"|#(?:include|define|if|endif|!)"
    r"|(?:from [\w.]+ )?import [\w.*]+(?: as \w+)?;?$"
    r"|[\w.\[\]\"']+(?:\s*,\s*[\w.]+)*\s*(?:[-+*/%|&^]|//|<<|>>|:)?=(?!=)\s*\S"
    r"|[\w.]+\(.*\)[;,]?$"
    r"|[})\]]+[;,)]*$"
)
_DIFF_HEAD = re.compile(r"diff --git |--- \S|\+\+\+ \S|@@ -\d")
_DIFF_LINE = re.compile(r"[ +\-\\]|@@ |diff |index ")
CODE_SHARE = 0.6  # a paragraph is code when this share of its lines (2 or more) look like code


def _code_line(line: str) -> bool:
    s = line.strip()
    if not s or _BULLET.match(s):
        return False
    if s.endswith(_CODE_ENDS) or _CODE_LINE.match(s):
        return True
    # Indented by 4+ spaces or a tab (markdown's indented code), and not ending like a sentence.
    return line.startswith(("    ", "\t")) and not s.endswith((".", "!", "?", '."', ".)"))


def _mostly_code(lines: list[str]) -> bool:
    misses_allowed = len(lines) - math.ceil(CODE_SHARE * len(lines))
    for ln in lines:
        if not _code_line(ln):
            misses_allowed -= 1
            if misses_allowed < 0:
                return False
    return True


def _split_code(text: str) -> list[Segment]:
    """Paragraphs that are mostly code lines, and the single code lines and blank lines between
    them, then diffs (from a header line while lines start like a diff's)."""
    if "\n" not in text and "\r" not in text:
        return [Segment("text", text)]
    bounds = _line_bounds(text)
    lines = [text[a:b] for a, b in bounds]
    code = [False] * len(lines)
    if "@@ -" in text or "diff --git" in text:
        _mark_diffs(lines, code)
    blank = [not ln.strip() for ln in lines]
    paras: list[tuple[int, int, bool]] = []  # [first, last) lines of each paragraph, is code
    i, n_lines = 0, len(lines)
    while i < n_lines:
        if blank[i] or code[i]:
            i += 1
            continue
        j = i + 1
        while j < n_lines and not blank[j] and not code[j]:
            j += 1
        paras.append((i, j, j - i >= 2 and _mostly_code(lines[i:j])))
        i = j
    for k, (a, b, is_code) in enumerate(paras):
        if not is_code:  # a single code line between code paragraphs
            near = (k > 0 and paras[k - 1][2]) or (k + 1 < len(paras) and paras[k + 1][2])
            is_code = b - a == 1 and near and _code_line(lines[a])
        if is_code:
            code[a:b] = [True] * (b - a)
    if not any(code):
        return [Segment("text", text)]
    spans: list[tuple[int, int]] = []  # blocks of code lines and the blank lines between them
    for n, flag in enumerate(code):
        if not flag:
            continue
        if spans and all(blank[spans[-1][1] : n]):
            spans[-1] = (spans[-1][0], n + 1)
        else:
            spans.append((n, n + 1))
    return _cut_blocks(text, bounds, spans, "code")


def _mark_diffs(lines: list[str], code: list[bool]) -> None:
    i = 0
    while i < len(lines):
        if _DIFF_HEAD.match(lines[i]):
            j = i + 1
            while j < len(lines) and lines[j] and _DIFF_LINE.match(lines[j]):
                j += 1
            if j - i >= 3:
                code[i:j] = [True] * (j - i)
                i = j
                continue
        i += 1


_TABLE_RULE = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)+\|?[ \t]*$")
MIN_TABLE_ROWS = 3  # a CSV / TSV block: at least this many lines with the same cell count


def _split_tables(text: str) -> list[Segment]:
    """Markdown pipe tables (a header row, a rule row, rows holding a pipe), and CSV / TSV
    blocks (3+ lines with the same number of tabs, or of commas when 2 or more: prose lines
    with one comma each are common). A row dropped from a table changes every total, count
    and comparison over it, so a table is never cut into sentences."""
    if "|" not in text and "," not in text and "\t" not in text:
        return [Segment("text", text)]
    bounds = _line_bounds(text)
    lines = [text[a:b] for a, b in bounds]
    spans: list[tuple[int, int]] = []  # [first, last) line indices
    i = 0
    while i < len(lines):
        end = _table_end(lines, i)
        if end > i:
            spans.append((i, end))
            i = end
        else:
            i += 1
    return _cut_blocks(text, bounds, spans, "table")


_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # the breaks lossless normalises to "\n"


def _line_bounds(text: str) -> list[tuple[int, int]]:
    """(start, end) of each line, without its break; a lone CR breaks a line too, so that a
    block found in the raw text is the block found once lossless made it LF-only."""
    bounds: list[tuple[int, int]] = []
    if "\r" not in text:  # the common case, faster
        pos = 0
        for line in text.split("\n"):
            bounds.append((pos, pos + len(line)))
            pos += len(line) + 1
        return bounds
    pos = 0
    for m in _LINE_BREAK.finditer(text):
        bounds.append((pos, m.start()))
        pos = m.end()
    bounds.append((pos, len(text)))
    return bounds


def _cut_blocks(
    text: str, bounds: list[tuple[int, int]], spans: list[tuple[int, int]], kind: SegmentKind
) -> list[Segment]:
    """`text` as prose around the blocks of whole lines [first, last) in `spans`."""
    if not spans:
        return [Segment("text", text)]
    out: list[Segment] = []
    pos = 0
    for first, last in spans:
        a, b = bounds[first][0], bounds[last - 1][1]  # the block, without its final break
        if a > pos:
            out.append(Segment("text", text[pos:a]))
        out.append(Segment(kind, text[a:b]))
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
