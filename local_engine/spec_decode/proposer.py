"""The proposer interface and the factory that builds one from `SpeculativeConfig`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from local_engine.config import SpeculativeConfig

if TYPE_CHECKING:
    from local_engine.spec_decode.draft_model import DraftModel


class Proposer(Protocol):
    """Drafts up to `k` tokens to follow `tokens` (prompt + generated so far)."""

    def propose(self, tokens: npt.NDArray[np.int64], k: int) -> list[int]: ...


def create_proposer(config: SpeculativeConfig, draft: DraftModel | None = None) -> Proposer | None:
    """One proposer per sequence (a draft model keeps a per-sequence cache)."""
    if config.method == "off":
        return None
    if config.method == "ngram":
        from local_engine.spec_decode.ngram_proposer import NgramProposer

        return NgramProposer(config)
    if config.method == "draft":
        if draft is None:
            raise ValueError("speculative method 'draft' needs a loaded draft model")
        from local_engine.spec_decode.draft_model import DraftModelProposer

        return DraftModelProposer(draft)
    raise ValueError(f"unknown speculative method {config.method!r}")
