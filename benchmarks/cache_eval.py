"""Evaluate the semantic cache's hit decision on labelled paraphrase pairs.

For each pair, the first text is the cached question and the second the new one; a hit is
what the gateway would do: both texts short enough to be compared by meaning (the gateway
caches longer ones exactly only: veto "exact-only"), cosine of the two embeddings (the same
ONNX MiniLM the gateway loads) >= the minimum similarity, no veto from the verifier, verifier
score >= threshold.
Prints the hit rate on true paraphrases and the false-hit rate on non-paraphrases at the
default threshold, the veto breakdown, a threshold sweep and plain cosine as the baseline.

    python benchmarks/cache_eval.py /path/to/msr-para-train.tsv            # default settings
    python benchmarks/cache_eval.py /path/to/pairs.tsv --fit               # tune on a split

Files (`pair_files.py`): TSV, CSV, JSON Lines or a JSON array, gzipped or not, with a header
naming a label column (label, quality, is_duplicate, ...) and two text columns (MSRP's
`#1 String`/`#2 String`, Quora's `question1`/`question2`, `sentence1`/`sentence2`, `text_a`/
`text_b`, ...), or with no header (the 0/1 column is the label, the two longest the texts).
Graded labels (STS's 0-5) need `--positive-at`. Splits are
deterministic (`--seed`); `--fit` grid-searches the verifier weights on the tuning split and
reports both splits, so the held-out figure is the honest one.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from benchmarks.pair_files import PairFileError, load_pairs
from gateway.cache.embedder import OnnxMiniLM, WordVectorCache
from gateway.cache.keys import request_keys
from gateway.cache.text_facts import analyse, embedding_text
from gateway.cache.verifier import (
    DEFAULT_MIN_COS,
    DEFAULT_SCORE_THRESHOLD,
    DEFAULT_WEIGHTS,
    PairVerifier,
    VerifierConfig,
)


def compared_by_meaning(text: str) -> bool:
    """Whether the gateway would look this text up by meaning, asked as a chat's one user turn
    (a turn longer than `keys.MAX_QUERY_CHARS` is cached exactly only)."""
    body = {"messages": [{"role": "user", "content": text}]}
    return request_keys("eval", "chat", "eval", body).query is not None


def split(n: int, holdout: float, seed: int) -> np.ndarray:
    """True for pairs in the tuning split."""
    perm = np.random.default_rng(seed).permutation(n)
    tune = np.zeros(n, dtype=bool)
    tune[perm[: round(n * (1 - holdout))]] = True
    return tune


def rates(hit: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    pos, neg = mask & (labels == 1), mask & (labels == 0)
    return float(hit[pos].mean()) if pos.any() else 0.0, float(
        hit[neg].mean()
    ) if neg.any() else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("tsv", type=Path, nargs="+")
    ap.add_argument("--holdout", type=float, default=0.3, help="share held out (default 0.3)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--fit", action="store_true", help="grid-search weights on the tuning split")
    ap.add_argument("--threshold", type=float, default=DEFAULT_SCORE_THRESHOLD)
    ap.add_argument("--min-cos", type=float, default=DEFAULT_MIN_COS)
    ap.add_argument("--target-fhr", type=float, default=0.01)
    ap.add_argument("--quantized", action="store_true", help="int8 dynamic-quantised model")
    ap.add_argument(
        "--positive-at",
        type=float,
        default=None,
        help="graded labels (e.g. STS 0-5): a pair scored at least this is a paraphrase",
    )
    args = ap.parse_args()

    t0 = time.perf_counter()
    embedder = OnnxMiniLM.load(quantized=args.quantized)
    words = WordVectorCache(embedder)
    print(f"model loaded in {time.perf_counter() - t0:.1f}s")
    sets = [prepare(path, embedder, words, args) for path in args.tsv]
    weights, threshold = dict(DEFAULT_WEIGHTS), args.threshold
    if args.fit:  # one setting for every file: false hits under the target on each
        weights, threshold = fit(sets, args)
    for data in sets:
        report(data, weights, threshold, args)


@dataclass
class Scored:
    """One labelled file, embedded and analysed: what every setting is evaluated on."""

    name: str
    labels: np.ndarray
    cos: np.ndarray
    feats: list[dict[str, float] | None]  # None: vetoed
    vetoes: list[str | None]
    tune: np.ndarray  # True for pairs in the tuning split


def prepare(
    path: Path, embedder: OnnxMiniLM, words: WordVectorCache, args: argparse.Namespace
) -> Scored:
    try:
        loaded = load_pairs(path, args.positive_at)
    except (PairFileError, OSError, ValueError) as exc:
        raise SystemExit(str(exc)) from None
    pairs = loaded.pairs
    if loaded.skipped:
        print(f"{path.name}: skipped rows: {dict(loaded.skipped)}")
    labels = np.array([p.label for p in pairs])
    t0 = time.perf_counter()
    # by length, so each batch pads little
    texts = sorted({t for p in pairs for t in (p.cached, p.query)}, key=lambda t: (len(t), t))
    # embedded in the form the gateway embeds (embedding_text), as the gateway does
    forms = [embedding_text(t) for t in texts]
    vecs = np.concatenate([embedder.embed(forms[i : i + 64]) for i in range(0, len(forms), 64)])
    row = {t: i for i, t in enumerate(texts)}
    cos = np.array([float(vecs[row[p.cached]] @ vecs[row[p.query]]) for p in pairs])
    facts = {t: analyse(t) for t in texts}
    semantic = {t: compared_by_meaning(t) for t in texts}
    vocab = sorted({w for f in facts.values() for w in f.content})
    for i in range(0, len(vocab), 256):  # warm the word vectors in batches, not pair by pair
        words(vocab[i : i + 256])
    probe = PairVerifier(VerifierConfig(min_cos=-1.0), word_vectors=words)
    feats, vetoes = [], []
    for p, c in zip(pairs, cos, strict=True):
        if not (semantic[p.query] and semantic[p.cached]):
            feats.append(None)  # the gateway caches such a turn exactly only: no semantic hit
            vetoes.append("exact-only")
            continue
        v = probe.verify(facts[p.query], facts[p.cached], float(c))
        feats.append(v.features if v.reason in ("ok", "score") else None)
        vetoes.append(v.reason if v.reason not in ("ok", "score") else None)
    print(
        f"{path.name}: {len(pairs)} pairs ({int(labels.sum())} paraphrases), "
        f"embedded + analysed in {time.perf_counter() - t0:.1f}s"
    )
    tune = split(len(pairs), args.holdout, args.seed)
    return Scored(path.name, labels, cos, feats, vetoes, tune)


def report(
    data: Scored, weights: dict[str, float], threshold: float, args: argparse.Namespace
) -> None:
    labels, cos, feats, vetoes, tune = data.labels, data.cos, data.feats, data.vetoes, data.tune
    print(f"\n== {data.name}: {len(labels)} pairs ({int(labels.sum())} paraphrases)")
    score = scores(feats, weights, cos, args.min_cos)
    hit = score >= threshold
    print(f"weights {weights}  min_cos {args.min_cos}  threshold {threshold}")
    for name, mask in (
        ("tuning split", tune),
        ("held-out split", ~tune),
        ("all pairs", tune | ~tune),
    ):
        h, f = rates(hit, labels, mask)
        print(f"  {name:15s} hit rate on paraphrases {h:6.1%}   false-hit rate {f:6.2%}")
    counts = Counter((v, int(lab)) for v, lab in zip(vetoes, labels, strict=True) if v)
    print(
        "  vetoes (non-paraphrase / paraphrase):",
        ", ".join(f"{k} {counts[(k, 0)]}/{counts[(k, 1)]}" for k in sorted({k for k, _ in counts})),
    )
    print("  sweep (all pairs): threshold  hit  false-hit")
    for t in (0.75, 0.78, 0.80, 0.82, 0.84, 0.85, 0.86, 0.88, 0.90, 0.92, 0.95):
        h, f = rates(score >= t, labels, tune | ~tune)
        print(f"    {t:.2f}  {h:6.1%}  {f:6.2%}")
    neg = np.sort(cos[labels == 0])
    thr = neg[min(len(neg) - 1, int(np.floor(len(neg) * (1 - args.target_fhr))))]
    h, f = rates(cos > thr, labels, tune | ~tune)
    print(
        f"  baseline, plain cosine at <= {args.target_fhr:.0%} false hits (cos > {thr:.3f}): "
        f"hit {h:.1%}, false-hit {f:.2%}"
    )


def scores(
    feats: list[dict[str, float] | None], weights: dict[str, float], cos: np.ndarray, min_cos: float
) -> np.ndarray:
    out = np.full(len(feats), -1.0)
    for i, f in enumerate(feats):
        if f is not None and cos[i] >= min_cos:
            out[i] = f["cos"] + sum(weights.get(k, 0.0) * v for k, v in f.items())
    return out


def fit(sets: list[Scored], args: argparse.Namespace) -> tuple[dict[str, float], float]:
    """Best mean hit rate over the files' tuning splits, with false hits under the target
    (with a margin: held-out rates are noisier) on every file's tuning split."""
    best: tuple[float, dict[str, float], float] = (-1.0, dict(DEFAULT_WEIGHTS), args.threshold)
    grid = itertools.product(
        (0.0, -0.1, -0.2, -0.3, -0.4, -0.5),
        (0.0, -0.05, -0.1, -0.2),
        (0.0, -0.05, -0.1),
        (0.0, -0.1, -0.2),
    )
    for a, b, c, e in grid:
        w = {"unmatched_max": a, "unmatched_min": b, "name_one_side": c, "intent_conflict": e}
        all_scores = [scores(d.feats, w, d.cos, args.min_cos) for d in sets]
        for t in np.arange(0.78, 0.98, 0.01):
            hits = []
            for d, s in zip(sets, all_scores, strict=True):
                h, f = rates(s >= t, d.labels, d.tune)
                if f > args.target_fhr * 0.8:
                    break
                hits.append(h)
            else:
                if float(np.mean(hits)) > best[0]:
                    best = (float(np.mean(hits)), w, round(float(t), 2))
    return best[1], best[2]


if __name__ == "__main__":
    main()
