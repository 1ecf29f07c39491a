from __future__ import annotations

import random

from gateway.compression.segments import split_segments
from tests.unit.compression.conftest import random_messy_text


def test_segments_rejoin_to_the_exact_input() -> None:
    rng = random.Random(1)
    for _ in range(300):
        text = random_messy_text(rng)
        assert "".join(s.text for s in split_segments(text)) == text


def test_fenced_code_is_one_segment_and_unclosed_fence_runs_to_the_end() -> None:
    text = "intro\n```python\nx = 1\n\n\ny = 2\n```\nafter\n~~~\nopen   fence\n  rest"
    kinds = [(s.kind, s.text) for s in split_segments(text)]
    assert ("code", "```python\nx = 1\n\n\ny = 2\n```") in kinds
    assert kinds[-1] == ("code", "~~~\nopen   fence\n  rest")


def test_json_must_start_and_end_a_line_and_parse() -> None:
    text = 'a\n{"k": 1}\nb {"inline": 1}\n[link](x)\n[1, 2,\n 3]  \nNaN:\n[NaN]'
    found = [s.text for s in split_segments(text) if s.kind == "json"]
    assert found == ['{"k": 1}', "[1, 2,\n 3]"]
