"""Structured text that balanced mode must keep whole: fenced code nested under a list item
(indented 4+ spaces, as LLM answers write it) and tables (markdown pipes, CSV, TSV), whose rows
answer questions over the whole table ("the total revenue"). Found by hunter h4 (session 8)."""

from __future__ import annotations

import random

from gateway.compression import CompressionOptions, PromptCompressor
from gateway.compression.lossless import lossless_text
from gateway.compression.segments import split_segments
from gateway.compression.tokens import TiktokenCounter
from tests.unit.compression.conftest import filler_passage

BALANCED = CompressionOptions(mode="balanced", min_prompt_tokens=0, min_saved_tokens=0)


def _chat(history: str, question: str) -> list[dict[str, str]]:
    return [
        {"role": "user", "content": "Please help. " + filler_passage(random.Random(9), 4)},
        {"role": "assistant", "content": history},
        {"role": "user", "content": question},
    ]


def test_a_fence_nested_under_a_list_item_is_code(counter: TiktokenCounter) -> None:
    body = "\n".join(f"        total_{i} = compute_value({i})  * factor" for i in range(25))
    fence = "    ```python\n    def run(factor):\n" + body + "\n\n\n        return total_0\n    ```"
    history = (
        "Here is how:\n\n1. Install the package.\n2. Write the function:\n\n"
        + fence
        + "\n\n3. Run it.\n\n"
        + filler_passage(random.Random(3), 10)
    )
    assert ("code", fence) in [(s.kind, s.text) for s in split_segments(history)]
    assert fence in lossless_text(history)
    res = PromptCompressor(counter).compress(_chat(history, "Explain run line by line."), BALANCED)
    assert res.method == "balanced"
    assert fence in res.messages[1]["content"]


def test_deeper_fences_and_their_closers_pair_up() -> None:
    text = "- a\n  - b\n\n      ~~~~\n      x  =  1\n      ~~~~\n\nafter  text"
    kinds = [(s.kind, s.text) for s in split_segments(text)]
    assert ("code", "      ~~~~\n      x  =  1\n      ~~~~") in kinds
    assert kinds[-1][0] == "text"


def _sales(rows: int) -> tuple[str, str, str]:
    pipes = "| Year | Region | Revenue |\n|---|:---:|---:|\n" + "\n".join(
        f"| {2000 + i} | Region {chr(65 + i % 5)} | {100 + i * 7} |" for i in range(rows)
    )
    csv = "year,region,revenue\n" + "\n".join(
        f"{2000 + i},Region {chr(65 + i % 5)},{100 + i * 7}" for i in range(rows)
    )
    tsv = "year\tregion\trevenue\n" + "\n".join(
        f"{2000 + i}\tRegion {chr(65 + i % 5)}\t{100 + i * 7}" for i in range(rows)
    )
    return pipes, csv, tsv


def test_tables_are_segments_of_their_own() -> None:
    for table in _sales(4):
        text = "Our data:\n\n" + table + "\n\nThat is all."
        kinds = [(s.kind, s.text) for s in split_segments(text)]
        assert ("table", table) in kinds, kinds
        assert "".join(t for _k, t in kinds) == text


def test_prose_with_commas_is_not_a_table() -> None:
    text = "Well, I think so.\nYes, we agree.\nNo, not at all.\nA, b and c, d."
    assert [s.kind for s in split_segments(text)] == ["text"]


def test_balanced_keeps_every_row_of_a_table(counter: TiktokenCounter) -> None:
    for table in _sales(30):
        history = (
            "Here is our sales data:\n\n" + table + "\n\n" + filler_passage(random.Random(5), 8)
        )
        msgs = _chat(history, "What is the total revenue across all years?")
        res = PromptCompressor(counter).compress(msgs, BALANCED)
        assert res.method == "balanced"
        assert table in res.messages[1]["content"]


def test_a_repeated_table_is_dropped_like_a_repeated_json_value(
    counter: TiktokenCounter,
) -> None:
    table = _sales(12)[1]
    msgs = [
        {"role": "user", "content": "Data:\n\n" + table},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "Again:\n\n" + table},
        {"role": "user", "content": "Sum the revenue."},
    ]
    lossless = CompressionOptions(mode="lossless", min_prompt_tokens=0, min_saved_tokens=0)
    res = PromptCompressor(counter).compress(msgs, lossless)
    assert table in res.messages[0]["content"]
    assert table not in res.messages[2]["content"]
