"""The in-process vector index: one small index per cache scope, exact or IVF.

Scopes are small as a rule (one tenant, one system prompt, one parameter set), and an exact
dot product over a few thousand unit vectors takes well under a millisecond. A scope that
grows past `ann_min` entries gets a faiss IVF index over the same rows (when faiss is
installed), so 100k entries in one scope still answer in about a millisecond. Not
thread-safe: the cache mutates and searches it from its one worker thread.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger("thriftgate.cache.index")

Vector = npt.NDArray[np.float32]
ANN_MIN = 8192  # exact search below this many entries per scope
NPROBE = 8  # lists scanned per search: ~8/sqrt(n) of the scope


def _faiss() -> Any | None:
    try:
        import faiss
    except ImportError:  # optional: without it every scope stays exact (slower past ~20k)
        return None
    # One search is ~0.1 ms of work: OpenMP threads only add wake-ups and, on a shared CPU,
    # spin against the embedder and the event loop.
    faiss.omp_set_num_threads(1)
    return faiss


@dataclass(frozen=True, slots=True)
class Neighbour:
    entry_id: str
    cos: float


class ScopeIndex:
    """Unit vectors of one scope; rows are swap-removed so the matrix stays dense."""

    def __init__(self, dim: int, *, ann_min: int = ANN_MIN) -> None:
        self.dim = dim
        self.ann_min = ann_min
        self._mat: Vector = np.empty((16, dim), dtype=np.float32)
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._label: dict[str, int] = {}  # entry id -> int64 label in the IVF index
        self._by_label: dict[int, str] = {}
        self._next_label = 0
        self._ivf: Any | None = None
        self._ivf_trained_on = 0

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._row

    def add(self, entry_id: str, vec: Vector) -> None:
        if entry_id in self._row:
            return
        n = len(self._ids)
        if n == self._mat.shape[0]:
            grown = np.empty((n * 2, self.dim), dtype=np.float32)
            grown[:n] = self._mat[:n]
            self._mat = grown
        self._mat[n] = vec
        self._ids.append(entry_id)
        self._row[entry_id] = n
        if self._ivf is not None:
            self._ivf_add(entry_id, vec[None, :])
        self._maybe_build_ivf()

    def remove(self, entry_id: str) -> None:
        row = self._row.pop(entry_id, None)
        if row is None:
            return
        last = len(self._ids) - 1
        if row != last:
            moved = self._ids[last]
            self._mat[row] = self._mat[last]
            self._ids[row] = moved
            self._row[moved] = row
        self._ids.pop()
        label = self._label.pop(entry_id, None)
        if label is not None and self._ivf is not None:
            self._by_label.pop(label, None)
            self._ivf.remove_ids(np.array([label], dtype=np.int64))

    def search(self, query: Vector, k: int = 4) -> list[Neighbour]:
        n = len(self._ids)
        if n == 0:
            return []
        if self._ivf is not None:
            dist, labels = self._ivf.search(query[None, :].astype(np.float32), k)
            out = []
            for d, lab in zip(dist[0], labels[0], strict=True):
                entry = self._by_label.get(int(lab))
                if entry is not None:
                    out.append(Neighbour(entry, float(d)))
            return out
        sims = self._mat[:n] @ query
        k = min(k, n)
        top = np.argpartition(sims, n - k)[n - k :] if k < n else np.arange(n)
        top = top[np.argsort(-sims[top])]
        return [Neighbour(self._ids[i], float(sims[i])) for i in top]

    def _maybe_build_ivf(self) -> None:
        n = len(self._ids)
        if n < self.ann_min or n < 4 * self._ivf_trained_on:
            return
        faiss = _faiss()
        if faiss is None:
            return
        nlist = max(16, int(math.sqrt(n)))
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        data = self._mat[:n]
        # k-means on a sample (faiss wants >= 39 points per list): seconds, not minutes
        sample = np.random.default_rng(n).choice(n, size=min(n, 50 * nlist), replace=False)
        ivf.train(np.ascontiguousarray(data[np.sort(sample)]))
        ivf.nprobe = NPROBE
        self._ivf = ivf
        self._ivf_quantizer = quantizer  # faiss does not own it from Python: keep it alive
        self._label.clear()
        self._by_label.clear()
        self._ivf_add_many(self._ids, data)
        self._ivf_trained_on = n
        log.info("built an IVF index (%d lists) over %d entries", nlist, n)

    def _ivf_add(self, entry_id: str, vecs: Vector) -> None:
        self._ivf_add_many([entry_id], vecs)

    def _ivf_add_many(self, entry_ids: list[str], vecs: Vector) -> None:
        assert self._ivf is not None
        labels = np.arange(self._next_label, self._next_label + len(entry_ids), dtype=np.int64)
        self._next_label += len(entry_ids)
        for entry_id, label in zip(entry_ids, labels, strict=True):
            self._label[entry_id] = int(label)
            self._by_label[int(label)] = entry_id
        self._ivf.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32), labels)


class VectorIndex:
    """All scopes of this replica."""

    def __init__(self, dim: int, *, ann_min: int = ANN_MIN) -> None:
        self.dim = dim
        self.ann_min = ann_min
        self._scopes: dict[str, ScopeIndex] = {}

    def __len__(self) -> int:
        return sum(len(s) for s in self._scopes.values())

    def size(self, scope: str) -> int:
        index = self._scopes.get(scope)
        return len(index) if index is not None else 0

    def add(self, scope: str, entry_id: str, vec: Vector) -> None:
        index = self._scopes.get(scope)
        if index is None:
            index = self._scopes[scope] = ScopeIndex(self.dim, ann_min=self.ann_min)
        index.add(entry_id, vec)

    def remove(self, scope: str, entry_id: str) -> None:
        index = self._scopes.get(scope)
        if index is None:
            return
        index.remove(entry_id)
        if not len(index):
            del self._scopes[scope]

    def search(self, scope: str, query: Vector, k: int = 4) -> list[Neighbour]:
        index = self._scopes.get(scope)
        return index.search(query, k) if index is not None else []
