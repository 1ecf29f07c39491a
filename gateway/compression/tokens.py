"""Token counting for compression decisions: tiktoken, from the encodings bundled with litellm.

The gateway never fetches from the network, so the BPE files come from litellm's package data
(`litellm/litellm_core_utils/tokenizers`). Counts are an estimate of what the upstream will bill;
the upstream's own `usage` block stays the source of truth for the ledger.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Protocol

import tiktoken

DEFAULT_ENCODING = "cl100k_base"


class TokenCounter(Protocol):
    def count(self, text: str) -> int: ...


def _litellm_tokenizer_dir() -> Path | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    return path if path.is_dir() else None


class TiktokenCounter:
    """Counts tokens with a tiktoken encoding (cl100k_base by default)."""

    def __init__(self, encoding: str = DEFAULT_ENCODING) -> None:
        if "TIKTOKEN_CACHE_DIR" not in os.environ:
            # Point tiktoken at litellm's bundled BPE files instead of the network.
            bundled = _litellm_tokenizer_dir()
            if bundled is not None:
                os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled)
        self._enc = tiktoken.get_encoding(encoding)

    def count(self, text: str) -> int:
        if not text:
            return 0
        return len(self._enc.encode_ordinary(text))
