"""Prompt-lookup (n-gram) drafting: copy what followed the last time the context's tail appeared.

The matching is a pure function over a token array so it can be tested without a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from local_engine.config import SpeculativeConfig

TokenArray = npt.NDArray[np.int64]


def find_longest_matched_ngram_and_propose_tokens(
    tokens: Sequence[int] | TokenArray,
    *,
    min_ngram: int,
    max_ngram: int,
    k: int,
) -> list[int]:
    """Draft up to `k` tokens by prompt lookup.

    Tries suffix lengths from `max_ngram` down to `min_ngram`; for the longest suffix that also
    occurs earlier in `tokens`, returns the tokens that followed its most recent earlier
    occurrence (the most recent copy is the likeliest one being edited). Empty if nothing matches.
    """
    arr = np.asarray(tokens, dtype=np.int64)
    total = int(arr.shape[0])
    if k <= 0 or total < 2:
        return []
    for n in range(min(max_ngram, total - 1), min_ngram - 1, -1):
        pattern = arr[total - n :]
        # Windows that start at i and end before the suffix itself (i + n <= total - 1).
        windows = np.lib.stride_tricks.sliding_window_view(arr[: total - 1], n)
        hits = np.flatnonzero((windows == pattern).all(axis=1))
        if hits.size == 0:
            continue
        start = int(hits[-1]) + n
        return [int(t) for t in arr[start : start + k]]
    return []


class NgramProposer:
    """Drafts by prompt lookup; stateless apart from its configuration."""

    def __init__(self, config: SpeculativeConfig) -> None:
        self.min_ngram = config.prompt_lookup_min
        self.max_ngram = config.prompt_lookup_max

    def propose(self, tokens: TokenArray, k: int) -> list[int]:
        return find_longest_matched_ngram_and_propose_tokens(
            tokens, min_ngram=self.min_ngram, max_ngram=self.max_ngram, k=k
        )
