"""Lossless compression: whitespace normalisation, exact JSON minification, duplicate blocks.

Nothing here changes what a text says. Fenced code blocks and tables are never touched; JSON
values are only stripped of insignificant whitespace (strings, numbers and key order stay
byte-identical, so the result parses to the same value); a prose, JSON or table block that
already appeared earlier in the conversation is replaced by a marker in the later message.
Every function is idempotent.

Prose is not always prose: users paste TSV (a tab per cell, so a run of tabs is empty cells),
code without fences (spaces inside string literals are data), and space-aligned tables (an
empty cell is a wider gap). Tabs are therefore never touched, and a line's inner spaces are
collapsed only when it holds no quote and lines up with no neighbour: when in doubt, a line is
left as it is.
"""

from __future__ import annotations

import re

from gateway.compression.segments import Segment, split_segments

# A repeated block shorter than this is left alone ("Thanks!", "---", a short heading).
MIN_DUPLICATE_CHARS = 120
DUPLICATE_MARKER = "[duplicate of an earlier block omitted]"

_INTERIOR_RUN = re.compile(r"(?<=\S) {2,}(?=\S)")
_TRAILING_SPACES = re.compile(r" +$", re.MULTILINE)  # a trailing tab is an empty TSV cell
# A quote that may open or close a string literal: " or `, or ' unless inside a word ("it's").
_QUOTE = re.compile(r"[\"`]|'(?![^\W\d_])|(?<![^\W\d_])'")
_BLANK_RUNS = re.compile(r"\n{3,}")
_JSON_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[^"\s]+')


def normalize_whitespace(text: str) -> str:
    """Prose only: CRLF to LF, trailing spaces, runs of inner spaces (see the module's note),
    common indentation of spaces, and runs of blank lines (at most one blank line in a row)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    # Cheap substring checks first: most prose has nothing to normalise.
    if " \n" in text or text.endswith(" "):
        text = _TRAILING_SPACES.sub("", text)
    if "  " in text:
        text = _collapse_inner_runs(text)
    if text[:1] == " " or "\n " in text:
        text = _dedent_spaces(text)
    if "\n\n\n" in text:
        text = _BLANK_RUNS.sub("\n\n", text)
    return text


def _collapse_inner_runs(text: str) -> str:
    lines = text.split("\n")
    aligned = _aligned_lines(lines)
    return "\n".join(
        _INTERIOR_RUN.sub(" ", line)
        if "  " in line and i not in aligned and _plain_line(line)
        else line
        for i, line in enumerate(lines)
    )


def _plain_line(line: str) -> bool:
    """No tab (TSV cells, code) and no quote (string literals, inline code spans)."""
    return "\t" not in line and _QUOTE.search(line) is None


def _aligned_lines(lines: list[str]) -> set[int]:
    """Lines whose gap of 2+ spaces ends where the next or previous line starts a word: a
    column. Both lines are marked, so that neither moves and the verdict is stable."""
    aligned: set[int] = set()
    for i, line in enumerate(lines):
        if "  " not in line:
            continue
        for m in _INTERIOR_RUN.finditer(line):
            col = m.end()
            for j in (i - 1, i + 1):
                if 0 <= j < len(lines) and _word_starts_at(lines[j], col):
                    aligned.update((i, j))
    return aligned


def _word_starts_at(line: str, col: int) -> bool:
    return col < len(line) and line[col] not in " \t" and line[col - 1] in " \t"


def _dedent_spaces(text: str) -> str:
    """Remove the indentation of spaces that every non-empty line shares. Unlike
    `textwrap.dedent`, a leading tab (an empty first TSV cell) and tab-only lines stay."""
    lines = text.split("\n")
    margin = min((len(ln) - len(ln.lstrip(" ")) for ln in lines if ln), default=0)
    if margin == 0:
        return text
    return "\n".join(ln[margin:] for ln in lines)


def minify_json(text: str) -> str:
    """Drop insignificant whitespace from a JSON value; strings are copied byte for byte."""
    return "".join(_JSON_TOKENS.findall(text))


def lossless_segments(text: str) -> list[Segment]:
    """Normalise prose and minify JSON; code and tables pass through unchanged."""
    out: list[Segment] = []
    for seg in split_segments(text):
        if seg.kind == "text":
            out.append(Segment("text", normalize_whitespace(seg.text)))
        elif seg.kind == "json":
            out.append(Segment("json", minify_json(seg.text)))
        else:
            out.append(seg)
    return out


def join_segments(segments: list[Segment]) -> str:
    """Concatenate, trimming prose at the junctions (never inside code) to one blank line,
    and prose at the very start and end of the message."""
    pieces = [seg.text for seg in segments if seg.text]
    kinds = [seg.kind for seg in segments if seg.text]
    out: list[str] = []
    trailing = 0  # newlines at the end of what has been emitted so far
    for i, (kind, text) in enumerate(zip(kinds, pieces, strict=True)):
        if kind in ("text", "keep"):
            lead = len(text) - len(text.lstrip("\n"))
            keep = max(0, min(lead, 2 - trailing)) if out else 0
            text = text[lead - keep :]
            if i == len(pieces) - 1:
                text = text.rstrip(" \n")  # not a tab: the empty last cell of a TSV row
        if not text:
            continue
        out.append(text)
        body = text.rstrip("\n")
        trailing = len(text) - len(body) + (trailing if not body else 0)
    return "".join(out)


def lossless_text(text: str) -> str:
    return join_segments(lossless_segments(text))


class DuplicateBlocks:
    """Remembers the prose paragraphs and JSON values seen so far in one conversation."""

    def __init__(self, min_chars: int = MIN_DUPLICATE_CHARS) -> None:
        self.min_chars = min_chars
        self._seen: set[str] = set()

    def observe(self, segments: list[Segment]) -> None:
        """Record the blocks of a message that is kept as it is (e.g. a protected one)."""
        for seg in segments:
            for block in _blocks(seg):
                if len(block) >= self.min_chars:
                    self._seen.add(block)

    def remove_repeats(self, segments: list[Segment]) -> list[Segment]:
        """Mark blocks seen earlier (in this or an earlier message) and remember the rest."""
        out: list[Segment] = []
        for seg in segments:
            if seg.kind == "code":
                out.append(seg)
                continue
            if seg.kind in ("json", "table"):  # a whole block: kept or dropped whole
                key = seg.text.strip()
                if len(key) >= self.min_chars and key in self._seen:
                    out.append(Segment("keep", DUPLICATE_MARKER))
                else:
                    self._seen.add(key)
                    out.append(seg)
                continue
            out.append(Segment("text", self._dedupe_prose(seg.text)))
        return out

    def _dedupe_prose(self, text: str) -> str:
        core = text.strip("\n")
        if len(core) < self.min_chars:
            return text
        lead = text[: len(text) - len(text.lstrip("\n"))]
        trail = text[len(text.rstrip("\n")) :]
        kept: list[str] = []
        dropped = False
        for para in core.split("\n\n"):
            key = para.strip()
            if len(key) >= self.min_chars:
                if key in self._seen:
                    # Its place is marked: a reader must not take the block for deleted (a
                    # file read again after an edit keeps its unchanged paragraphs).
                    if not kept or kept[-1] != DUPLICATE_MARKER:
                        kept.append(DUPLICATE_MARKER)
                    dropped = True
                    continue
                self._seen.add(key)
            kept.append(para)
        if not dropped:
            return text
        return lead + "\n\n".join(kept) + trail


def _blocks(seg: Segment) -> list[str]:
    if seg.kind == "code":
        return []
    if seg.kind in ("json", "table"):
        return [seg.text.strip()]
    return [p.strip() for p in seg.text.split("\n\n")]
