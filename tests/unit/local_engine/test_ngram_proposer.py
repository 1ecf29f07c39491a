from local_engine.config import SpeculativeConfig
from local_engine.spec_decode.ngram_proposer import (
    NgramProposer,
    find_longest_matched_ngram_and_propose_tokens,
)


def propose(tokens: list[int], k: int = 3, lo: int = 1, hi: int = 3) -> list[int]:
    return find_longest_matched_ngram_and_propose_tokens(tokens, min_ngram=lo, max_ngram=hi, k=k)


def test_copies_what_followed_the_matched_suffix() -> None:
    assert propose([1, 2, 3, 4, 5, 9, 2, 3]) == [4, 5, 9]


def test_prefers_the_longest_ngram_over_a_more_recent_shorter_one() -> None:
    # suffix (7, 8) matches at index 0; the 1-gram (8) also matches later, followed by 5.
    tokens = [7, 8, 1, 2, 8, 5, 7, 8]
    assert propose(tokens, k=2) == [1, 2]


def test_prefers_the_most_recent_occurrence_of_equal_length() -> None:
    tokens = [4, 5, 1, 4, 5, 2, 4, 5]
    assert propose(tokens, k=1, lo=2, hi=2) == [2]


def test_no_match_gives_no_draft() -> None:
    assert propose([1, 2, 3, 4], lo=2) == []


def test_draft_is_cut_at_the_end_of_the_context() -> None:
    assert propose([1, 2, 1], k=5, lo=1, hi=1) == [2, 1]


def test_degenerate_inputs() -> None:
    assert propose([], k=3) == []
    assert propose([1], k=3) == []
    assert propose([1, 1, 1], k=0) == []


def test_proposer_reads_its_config() -> None:
    proposer = NgramProposer(SpeculativeConfig(prompt_lookup_min=3, prompt_lookup_max=3))
    import numpy as np

    tokens = np.array([1, 2, 3, 4, 0, 2, 3, 1, 2, 3])
    assert proposer.propose(tokens, 2) == [4, 0]
    assert proposer.propose(np.array([0, 2, 3, 9, 2, 3]), 2) == []  # only 2-grams match
