from __future__ import annotations

import json
import random

from gateway.compression.lossless import (
    DUPLICATE_MARKER,
    DuplicateBlocks,
    join_segments,
    lossless_segments,
    lossless_text,
    minify_json,
    normalize_whitespace,
)
from gateway.compression.segments import split_segments
from tests.unit.compression.conftest import random_messy_text


def test_whitespace_is_normalised_outside_code() -> None:
    text = "  Hello   world.  \r\n\r\n\r\n\r\n    second\tline\n"
    assert normalize_whitespace(text) == "Hello world.\n\n  second\tline\n"
    code = "```\n  keep    this   \n\n\n\n```"
    assert lossless_text("a   b\n" + code) == "a b\n" + code


def test_inline_code_spacing_is_kept() -> None:
    assert lossless_text("run `ls   -la`   now") == "run `ls   -la`   now"


def test_json_is_minified_and_still_parses_to_the_same_value() -> None:
    value = {"name": "a  b", "nested": [1, 2.5, {"q": '"x"  y'}], "unicode": "é ü"}
    pretty = json.dumps(value, indent=4, ensure_ascii=False)
    out = lossless_text("Result:\n" + pretty)
    body = out.split("\n", 1)[1]
    assert json.loads(body) == value
    assert len(body) < len(pretty)
    assert "\n" not in body and '"a  b"' in body


def test_minify_keeps_numbers_duplicate_keys_and_escapes_byte_for_byte() -> None:
    raw = '{ "a" : 1.50 ,\n "a" : 1e3, "s": "\\u00e9  \\"q\\"" }'
    assert minify_json(raw) == '{"a":1.50,"a":1e3,"s":"\\u00e9  \\"q\\""}'


def test_lossless_is_idempotent_on_messy_random_text() -> None:
    rng = random.Random(7)
    for _ in range(400):
        once = lossless_text(random_messy_text(rng))
        assert lossless_text(once) == once


def test_code_blocks_survive_lossless_byte_identical() -> None:
    rng = random.Random(3)
    for _ in range(200):
        text = random_messy_text(rng)
        before = [s.text for s in split_segments(text) if s.kind == "code"]
        after = [s.text for s in split_segments(lossless_text(text)) if s.kind == "code"]
        assert [c.strip() for c in after] == [c.strip() for c in before]


def test_every_json_value_still_parses_after_lossless() -> None:
    rng = random.Random(5)
    for _ in range(200):
        for seg in split_segments(lossless_text(random_messy_text(rng))):
            if seg.kind == "json":
                json.loads(seg.text)


def test_duplicate_blocks_are_marked_after_their_first_occurrence() -> None:
    block = "The quarterly report shows revenue grew in every region. " * 3
    dupes = DuplicateBlocks()
    first = dupes.remove_repeats(lossless_segments(f"Intro.\n\n{block}"))
    second = dupes.remove_repeats(lossless_segments(f"{block}\n\nNew paragraph here."))
    assert block.strip() in join_segments(first)
    assert join_segments(second) == f"{DUPLICATE_MARKER}\n\nNew paragraph here."


def test_short_repeats_and_code_are_not_deduplicated() -> None:
    code = "```\n" + "print('same code block, long enough to count as a block')\n" * 3 + "```"
    dupes = DuplicateBlocks()
    dupes.remove_repeats(lossless_segments(f"Thanks!\n\n{code}"))
    again = join_segments(dupes.remove_repeats(lossless_segments(f"Thanks!\n\n{code}")))
    assert again == f"Thanks!\n\n{code}"


def test_duplicate_json_tool_results_are_marked() -> None:
    payload = json.dumps({"rows": [{"id": i, "name": f"item {i}"} for i in range(10)]}, indent=2)
    dupes = DuplicateBlocks()
    dupes.remove_repeats(lossless_segments(payload))
    assert join_segments(dupes.remove_repeats(lossless_segments(payload))) == DUPLICATE_MARKER


def test_tabs_of_tsv_rows_are_kept_so_empty_cells_stay_empty() -> None:
    rows = ["id\tname\tmanager\tcity\tsalary", "0\tEmp0\t\t\t50000", "1\tEmp1\tAnn\t\t", "\t\t\t\t"]
    tsv = "Employee export (TSV, empty cells mean unknown):\n" + "\n".join(rows)
    out = lossless_text(tsv)
    assert out.split("\n")[1:] == rows
    assert lossless_text("\tx\ty\n\tz\tw") == "\tx\ty\n\tz\tw"  # empty first column, every row


def test_string_literals_of_unfenced_code_keep_their_spaces() -> None:
    code = (
        "My code (pasted from the terminal, no fences):\n\n"
        "def pad(name):\n"
        '    return name + "    |"   # four spaces then a bar\n\n'
        "def test_pad():\n"
        '    assert pad("ab") == "ab    |"\n'
        "    assert fmt('a  b') == `x   y`"
    )
    out = lossless_text(code)
    assert '"    |"' in out and '"ab    |"' in out and "'a  b'" in out and "`x   y`" in out


def test_space_aligned_columns_are_left_alone() -> None:
    table = (
        "name      manager   city\n"
        "Emp0                Oslo\n"  # no manager: Oslo must stay under city
        "Emp1      Ann       Lima"
    )
    assert lossless_text("Staff:\n\n" + table) == "Staff:\n\n" + table


def test_prose_spacing_is_still_collapsed() -> None:
    text = "The nightly job ran        with status      OK.  It took   12 seconds."
    assert lossless_text(text) == "The nightly job ran with status OK. It took 12 seconds."
    assert lossless_text("It's  the  room") == "It's the room"  # an apostrophe is no quote
