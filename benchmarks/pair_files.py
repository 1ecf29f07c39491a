"""Read labelled text-pair files in the shapes their authors publish them.

`cache_eval.py` judges the semantic cache on pairs someone else labelled, so it must read what
people actually have: MSRP's TSV (unbalanced quotes, read verbatim), Quora's quoted CSV, GLUE's
and PAWS's TSVs, JSON Lines or a JSON array of objects, any of them gzipped, or a file with no
header at all (Curai's MQP: `dr_id, question_1, question_2, label`, where the first column is a
small number that only looks like a label).

Labels may be 0/1, true/false, yes/no or words (`paraphrase`, `not_duplicate`, ...). Graded
scores (STS's 0-5) are a paraphrase at `positive_at` and above; without it they are refused,
never guessed. Rows that cannot be read are counted by reason, never dropped in silence.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LABEL_NAMES = (
    "quality",
    "label",
    "is_duplicate",
    "is_paraphrase",
    "paraphrase",
    "duplicate",
    "is_similar",
    "similar",
    "gold_label",
    "score",
    "similarity",
    "relatedness_score",
)
TEXT_NAMES = (
    ("#1 string", "#2 string"),
    ("question1", "question2"),
    ("question_1", "question_2"),
    ("q1", "q2"),
    ("sentence1", "sentence2"),
    ("sentence_1", "sentence_2"),
    ("sentence_a", "sentence_b"),
    ("text1", "text2"),
    ("text_1", "text_2"),
    ("text_a", "text_b"),
    ("s1", "s2"),
    ("string1", "string2"),
)
POSITIVE = frozenset(
    [
        "1",
        "true",
        "yes",
        "y",
        "paraphrase",
        "duplicate",
        "similar",
        "positive",
        "same",
        "equivalent",
        "pos",
    ]
)
NEGATIVE = frozenset(
    [
        "0",
        "false",
        "no",
        "n",
        "not_paraphrase",
        "non_paraphrase",
        "not_duplicate",
        "non_duplicate",
        "dissimilar",
        "different",
        "negative",
        "not_similar",
        "not_equivalent",
        "neg",
    ]
)


class PairFileError(ValueError):
    """The file cannot be read as labelled pairs; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Pair:
    label: int
    cached: str
    query: str


@dataclass
class PairFile:
    pairs: list[Pair]
    skipped: Counter[str] = field(default_factory=Counter)


def load_pairs(path: Path, positive_at: float | None = None) -> PairFile:
    """Every labelled pair in `path`: the first text is the cached one, the second the new one."""
    text = _read_text(path)
    stem = path.name.lower().removesuffix(".gz")
    if stem.endswith((".jsonl", ".ndjson")) or (
        stem.endswith(".json") and text.lstrip().startswith("{") and "\n{" in text.strip()
    ):
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        return _from_records(path, records, positive_at)
    if stem.endswith(".json"):
        data = json.loads(text)
        if isinstance(data, dict):  # {"data": [...]} or {"pairs": [...]}
            data = next((v for v in data.values() if isinstance(v, list)), [])
        return _from_records(path, data, positive_at)
    return _from_rows(path, _rows(stem, text), positive_at)


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if path.name.lower().endswith(".gz") or raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8-sig")


def _rows(stem: str, text: str) -> list[list[str]]:
    csv.field_size_limit(10_000_000)
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first or stem.endswith(".tsv") else ","
    if delimiter == ",":
        return [r for r in csv.reader(io.StringIO(text)) if r]
    # TSV: quoted fields where every row then has the header's width (a pandas export),
    # otherwise verbatim (MSRP's sentences open quotes they never close on the same field)
    quoted = [r for r in csv.reader(io.StringIO(text), delimiter="\t") if r]
    if quoted and len({len(r) for r in quoted}) == 1 and any('"' in c for c in first.split("\t")):
        return quoted
    return [r for r in csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE) if r]


def _from_records(path: Path, records: list[Any], positive_at: float | None) -> PairFile:
    rows = [r for r in records if isinstance(r, dict)]
    if not rows:
        raise PairFileError(f"{path}: no JSON objects to read pairs from")
    keys = list(rows[0])
    header = [k.strip().lower() for k in keys]
    label_col, text_cols = _named_columns(header)
    if label_col is None or text_cols is None:
        raise PairFileError(
            f"{path}: cannot find a label and two text fields among {keys}; "
            f"labels: {', '.join(LABEL_NAMES)}; texts: e.g. question1/question2, text_a/text_b"
        )
    table = [[_cell(r.get(k)) for k in keys] for r in rows]
    return _labelled(table, label_col, text_cols, positive_at, path)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _from_rows(path: Path, rows: list[list[str]], positive_at: float | None) -> PairFile:
    if not rows:
        raise PairFileError(f"{path}: empty file")
    header = [h.strip().lower() for h in rows[0]]
    label_col, text_cols = _named_columns(header)
    if label_col is not None and text_cols is not None:
        return _labelled(rows[1:], label_col, text_cols, positive_at, path)
    if label_col is not None or text_cols is not None or not _looks_like_data(rows):
        raise PairFileError(
            f"{path}: cannot find a label and two text columns in the header {rows[0]}; "
            f"labels: {', '.join(LABEL_NAMES)}; texts: e.g. question1/question2, text_a/text_b"
        )
    label_col, text_cols = _guessed_columns(path, rows)
    return _labelled(rows, label_col, text_cols, positive_at, path)


def _named_columns(header: list[str]) -> tuple[int | None, tuple[int, int] | None]:
    label_col = next((header.index(h) for h in LABEL_NAMES if h in header), None)
    text_cols = next(
        ((header.index(a), header.index(b)) for a, b in TEXT_NAMES if a in header and b in header),
        None,
    )
    return label_col, text_cols


def _looks_like_data(rows: list[list[str]]) -> bool:
    """No header: the first row's cells read like the rest's (some of them are labels)."""
    return any(_label_value(c) is not None for c in rows[0])


def _guessed_columns(path: Path, rows: list[list[str]]) -> tuple[int, tuple[int, int]]:
    """A headerless file: the label is the column holding two label values in (almost) every
    row, the texts the two longest columns besides it."""
    width = max(len(r) for r in rows)
    full = [r for r in rows if len(r) == width]
    labels = []
    for col in range(width):
        values = [_label_value(r[col]) for r in full]
        read = [v for v in values if v is not None]
        if len(read) >= 0.98 * len(full) and set(read) == {0, 1}:
            labels.append(col)
    if not labels:
        raise PairFileError(
            f"{path}: no header and no column of 0/1 labels; add a header naming the label "
            "column (label, is_duplicate, quality) and the two texts (e.g. text_a, text_b)"
        )
    label_col = labels[-1]  # "id, a, b, label" more often than "label, a, b" with 0/1 ids

    def mean_len(col: int) -> float:
        return sum(len(r[col]) for r in full) / len(full)

    others = sorted((c for c in range(width) if c != label_col), key=mean_len, reverse=True)
    if len(others) < 2:
        raise PairFileError(f"{path}: a label column but not two text columns")
    a, b = sorted(others[:2])
    return label_col, (a, b)


def _label_value(cell: str) -> int | None:
    word = cell.strip().lower().replace("-", "_").replace(" ", "_")
    if word in POSITIVE:
        return 1
    if word in NEGATIVE:
        return 0
    number = _number(word)
    return None if number not in (0.0, 1.0) else int(number)  # "1.0", "0.00"


def _labelled(
    rows: list[list[str]],
    label_col: int,
    text_cols: tuple[int, int],
    positive_at: float | None,
    path: Path,
) -> PairFile:
    need = max(label_col, *text_cols)
    cells = [row[label_col].strip() for row in rows if len(row) > need]
    scores = [s for s in map(_number, cells) if s is not None]
    # one graded score (3.8) makes the whole column graded: its 0.0 and 1.0 are scores too
    graded = any(s not in (0.0, 1.0) for s in scores)
    if graded and positive_at is None:
        raise PairFileError(
            f"{path}: the labels are graded scores ({min(scores):g} to {max(scores):g}), "
            "not 0/1: pass --positive-at to say from which score a pair is a paraphrase"
        )
    out = PairFile([])
    for row in rows:
        if len(row) <= need:
            out.skipped["too few columns"] += 1
            continue
        a, b = row[text_cols[0]].strip(), row[text_cols[1]].strip()
        if not a or not b:
            out.skipped["an empty text"] += 1
            continue
        cell = row[label_col].strip()
        score = _number(cell)
        if graded and score is not None and positive_at is not None:
            label: int | None = int(score >= positive_at)
        else:
            label = _label_value(cell)
        if label is None:
            out.skipped[f"label {cell[:20]!r} is not a label"] += 1
            continue
        out.pairs.append(Pair(label, a, b))
    if not out.pairs:
        raise PairFileError(f"{path}: no labelled pairs read ({dict(out.skipped)})")
    return out


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None
