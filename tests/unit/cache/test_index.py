"""The per-scope vector index: exact search, swap-removal, and the IVF path for big scopes."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.cache.index import ScopeIndex, VectorIndex, _faiss


def unit(rng: np.random.Generator, n: int, dim: int = 32) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_exact_search_and_removal() -> None:
    rng = np.random.default_rng(0)
    vecs = unit(rng, 50)
    idx = ScopeIndex(32)
    for i, v in enumerate(vecs):
        idx.add(f"e{i}", v)
    assert len(idx) == 50
    top = idx.search(vecs[7], k=3)
    assert top[0].entry_id == "e7" and top[0].cos == pytest.approx(1.0, abs=1e-5)
    assert top[0].cos >= top[1].cos >= top[2].cos
    idx.remove("e7")
    idx.remove("e7")  # twice is harmless
    assert "e7" not in idx and len(idx) == 49
    assert all(n.entry_id != "e7" for n in idx.search(vecs[7], k=49))
    # the row that was swapped into e7's place is still found exactly
    assert idx.search(vecs[49], k=1)[0].entry_id == "e49"


def test_scopes_are_separate() -> None:
    rng = np.random.default_rng(1)
    v = unit(rng, 2)
    index = VectorIndex(32)
    index.add("scope-a", "a1", v[0])
    index.add("scope-b", "b1", v[1])
    assert [n.entry_id for n in index.search("scope-a", v[1], k=5)] == ["a1"]
    assert index.search("scope-c", v[0]) == []
    index.remove("scope-a", "a1")
    assert index.search("scope-a", v[0]) == [] and len(index) == 1


@pytest.mark.skipif(_faiss() is None, reason="faiss not installed")
def test_ivf_finds_near_duplicates_and_honours_removal() -> None:
    rng = np.random.default_rng(2)
    base = unit(rng, 3000, 64)
    idx = ScopeIndex(64, ann_min=1000)
    for i, v in enumerate(base):
        idx.add(f"e{i}", v)
    assert idx._ivf is not None
    found = 0
    for i in range(0, 3000, 30):
        q = base[i] + 0.05 * unit(rng, 1, 64)[0]
        q /= np.linalg.norm(q)
        found += idx.search(q.astype(np.float32), k=4)[0].entry_id == f"e{i}"
    assert found >= 95  # of 100 near-duplicate queries
    idx.remove("e0")
    assert all(n.entry_id != "e0" for n in idx.search(base[0], k=4))
    idx.add("late", base[0])  # added after the build: served through the IVF as well
    assert idx.search(base[0], k=1)[0].entry_id == "late"
