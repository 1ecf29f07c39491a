"""Draft-model speculation: a small model with the target's tokenizer drafts greedily.

The draft model is loaded once and shared; each sequence keeps its own draft KV cache, cropped
back to the longest prefix it shares with the verified tokens before drafting again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from transformers import AutoModelForCausalLM, DynamicCache, PreTrainedModel

from local_engine.backends.hf_cache import cache_kwargs


class DraftModel:
    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model

    @classmethod
    def load(cls, path: Path, dtype: torch.dtype) -> DraftModel:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        model.eval()  # type: ignore[no-untyped-call]
        return cls(model)


class DraftModelProposer:
    def __init__(self, draft: DraftModel) -> None:
        self.draft = draft
        self.cache = DynamicCache(config=draft.model.config)
        self.cached: list[int] = []  # tokens whose keys/values are in `cache`

    def propose(self, tokens: npt.NDArray[np.int64], k: int) -> list[int]:
        if k <= 0 or len(tokens) == 0:
            return []
        seq = [int(t) for t in tokens]
        common = 0
        limit = min(len(self.cached), len(seq) - 1)  # always re-feed at least the last token
        while common < limit and self.cached[common] == seq[common]:
            common += 1
        if common < len(self.cached):
            self.cache.crop(common - len(self.cached))
            self.cached = self.cached[:common]
        feed = seq[common:]
        drafts: list[int] = []
        with torch.inference_mode():
            for _ in range(k):
                out = self.draft.model(
                    input_ids=torch.tensor([feed], dtype=torch.long),
                    **cache_kwargs(self.draft.model, self.cache),
                    use_cache=True,
                    logits_to_keep=1,
                )
                self.cached.extend(feed)
                token = int(out.logits[0, -1].argmax())
                drafts.append(token)
                feed = [token]
        return drafts
