"""The evaluation reads labelled pair files as their authors publish them (benchmarks/pair_files).

Each shape here is one a user bringing their own set would have: a wrong guess would not fail
loudly, it would report a hit rate on mislabelled pairs.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from benchmarks.pair_files import Pair, PairFileError, load_pairs


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_headerless_file_whose_first_column_is_a_small_id(tmp_path: Path) -> None:
    # Curai's MQP: dr_id, question_1, question_2, label; dr_id 1 reads like a label
    rows = [
        '1,"Can I drink alcohol after antibiotics?","When can I drink after antibiotics?",1',
        '1,"Can I drink alcohol after antibiotics?","Is vomiting a side effect of alcohol?",0',
        '2,"Is 39 overweight at 193 lbs?","Am I overweight at 193 lbs and 39?",1',
        '2,"Is 39 overweight at 193 lbs?","What diet is good for losing weight?",0',
        '3,"Does aspirin thin blood?","Is aspirin a blood thinner?",1',
    ]
    loaded = load_pairs(write(tmp_path, "mqp.csv", "\n".join(rows) + "\n"))
    assert [p.label for p in loaded.pairs] == [1, 0, 1, 0, 1]
    assert loaded.pairs[0] == Pair(
        1, "Can I drink alcohol after antibiotics?", "When can I drink after antibiotics?"
    )


def test_msrp_tsv_with_unbalanced_quotes_is_read_verbatim(tmp_path: Path) -> None:
    text = (
        "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        '1\t1\t2\tHe said "the witness lied.\tHe called him "the witness".\n'
        "0\t3\t4\tShares rose 5%.\tShares fell 2% on Monday.\n"
    )
    loaded = load_pairs(write(tmp_path, "msr.tsv", text))
    assert [(p.label, p.cached) for p in loaded.pairs] == [
        (1, 'He said "the witness lied.'),
        (0, "Shares rose 5%."),
    ]


def test_word_labels_and_other_column_names(tmp_path: Path) -> None:
    text = (
        "text_a\ttext_b\tlabel\n"
        "how do I sort a list\thow to sort a list\tparaphrase\n"
        "how do I sort a list\thow do I reverse a list\tnot_paraphrase\n"
        "what is rust\twhat is the rust language\tTrue\n"
        "what is go\twhat is rust\tno\n"
    )
    loaded = load_pairs(write(tmp_path, "pairs.tsv", text))
    assert [p.label for p in loaded.pairs] == [1, 0, 1, 0]


def test_unreadable_labels_are_counted_not_dropped_silently(tmp_path: Path) -> None:
    text = "question1,question2,is_duplicate\na?,b?,1\nc?,d?,maybe\ne?,,0\n"
    loaded = load_pairs(write(tmp_path, "q.csv", text))
    assert len(loaded.pairs) == 1
    assert loaded.skipped == {"label 'maybe' is not a label": 1, "an empty text": 1}


def test_graded_scores_are_refused_without_a_cut_and_cut_with_one(tmp_path: Path) -> None:
    # STS-B: 0.0 and 1.0 are scores there, not labels
    text = "sentence1\tsentence2\tscore\na\tb\t4.2\nc\td\t1.0\ne\tf\t0.0\ng\th\t3.0\n"
    path = write(tmp_path, "sts.tsv", text)
    with pytest.raises(PairFileError, match="positive-at"):
        load_pairs(path)
    assert [p.label for p in load_pairs(path, positive_at=3.0).pairs] == [1, 0, 0, 1]


def test_json_lines_json_arrays_and_gzip(tmp_path: Path) -> None:
    records = [
        {"question1": "what is 2+2", "question2": "what's 2 plus 2", "is_duplicate": True},
        {"question1": "what is 2+2", "question2": "what is 2+3", "is_duplicate": False},
    ]
    lines = "\n".join(json.dumps(r) for r in records) + "\n"
    jsonl = write(tmp_path, "q.jsonl", lines)
    array = write(tmp_path, "q.json", json.dumps({"data": records}))
    gz = tmp_path / "q.jsonl.gz"
    gz.write_bytes(gzip.compress(lines.encode()))
    for path in (jsonl, array, gz):
        assert [p.label for p in load_pairs(path).pairs] == [1, 0], path


def test_quoted_tsv_from_pandas_loses_its_quotes(tmp_path: Path) -> None:
    text = '"q1"\t"q2"\t"label"\n"a, b"\t"a and b"\t"1"\n'
    assert load_pairs(write(tmp_path, "p.tsv", text)).pairs == [Pair(1, "a, b", "a and b")]


def test_a_file_without_labels_says_what_it_needs(tmp_path: Path) -> None:
    with pytest.raises(PairFileError, match="label"):
        load_pairs(write(tmp_path, "x.csv", "first,second\nhello,world\n"))
    with pytest.raises(PairFileError, match="no header and no column"):
        load_pairs(write(tmp_path, "y.csv", "1,hello,world,7\n2,a,b,9\n"))
