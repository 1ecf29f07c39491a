"""Relevance of context units to the query: BM25 always, sentence embeddings when available.

The embedder is an interface: the semantic cache's MiniLM model plugs in here once loaded
(see `Embedder`); without one, lexical BM25 scores alone decide.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

import numpy as np


def _mark_class() -> str:
    """The combining marks of the BMP as a character-class body. Python's word class leaves
    them out, which would cut a Hindi or Thai word at every vowel sign."""
    ranges: list[str] = []
    start = None
    for cp in range(0x10000):
        if unicodedata.category(chr(cp)).startswith("M"):
            start = cp if start is None else start
        elif start is not None:
            ranges.append(f"\\u{start:04x}-\\u{cp - 1:04x}")
            start = None
    return "".join(ranges)


_ASCII_WORD = re.compile(r"[a-z0-9]+")
# Letters and digits of any script (with their combining marks); not underscores.
_WORD = re.compile(rf"(?:[^\W_]|[{_mark_class()}])+")
# Scripts written without spaces between words (Han, kana, Hangul, Thai, Lao, Myanmar, Khmer):
# a "word" there is a whole phrase, so such runs are matched by character bigrams instead.
_UNSPACED = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u31f0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]+"
)
_INFLECTED = re.compile("[\u0370-\u03ff\u0400-\u04ff\u1f00-\u1fff]")  # Greek, Cyrillic
# Greek and Cyrillic inflect at the end of the word: these letters are stripped from the end.
_ENDING_LETTERS = frozenset("аеёиоуыэюяйьъάέήίόύώαεηιουωςϊϋΐΰ")
INFLECTED_PREFIX = 6
_STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your yours yourself s
    t d ll m re ve""".split()  # noqa: SIM905
)


class Embedder(Protocol):
    """Sentence embeddings, one L2-normalised row per text (shape: len(texts) x dim)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def stem(word: str) -> str:
    """A deliberately tiny suffix stripper: enough to match plurals and verb forms."""
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def stem_inflected(word: str) -> str:
    """Greek and Cyrillic: strip the vowel ending, then keep a 6-letter prefix, so that
    "резервного сервера" matches "резервный сервер". Crude, but over the paragraphs of one
    request an odd collision costs far less than never matching an inflected form."""
    end = len(word)
    while end > 3 and word[end - 1] in _ENDING_LETTERS:
        end -= 1
    return word[: min(end, INFLECTED_PREFIX)]


def terms(text: str) -> list[str]:
    """Index terms of any script: stemmed words, and character bigrams where a script puts
    no spaces between words (a Chinese question shares no whole "word" with its answer)."""
    text = text.lower()
    if text.isascii():  # the common case, and a faster pattern: the same terms
        return [stem(w) for w in _ASCII_WORD.findall(text) if w not in _STOPWORDS]
    out: list[str] = []
    for word in _WORD.findall(text):
        if word.isascii():
            if word not in _STOPWORDS:
                out.append(stem(word))
            continue
        pos = 0
        for run in _UNSPACED.finditer(word):
            _add_word(word[pos : run.start()], out)
            chars = run.group()
            out.extend([chars] if len(chars) == 1 else map("".join, itertools.pairwise(chars)))
            pos = run.end()
        _add_word(word[pos:], out)
    return out


def _add_word(word: str, out: list[str]) -> None:
    if not word or word in _STOPWORDS:
        return
    out.append(stem_inflected(word) if _INFLECTED.match(word) else stem(word))


class BM25:
    """Okapi BM25 over a small in-memory corpus (the units of one request)."""

    def __init__(self, docs: Sequence[Sequence[str]], k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self._tfs = [Counter(doc) for doc in docs]
        self._lens = [len(doc) for doc in docs]
        self._avg_len = (sum(self._lens) / len(docs)) if docs else 0.0
        df: Counter[str] = Counter()
        for tf in self._tfs:
            df.update(tf.keys())
        n = len(docs)
        self._idf = {t: math.log(1.0 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}

    def scores(self, query: dict[str, float]) -> list[float]:
        out: list[float] = []
        avg = self._avg_len or 1.0
        for tf, length in zip(self._tfs, self._lens, strict=True):
            norm = self.k1 * (1.0 - self.b + self.b * length / avg)
            total = 0.0
            for term, weight in query.items():
                f = tf.get(term)
                if f:
                    total += weight * self._idf[term] * f * (self.k1 + 1.0) / (f + norm)
            out.append(total)
        return out


def weighted_query(parts: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Query terms from several texts (the last user turn first), each with a weight."""
    query: dict[str, float] = {}
    for text, weight in parts:
        for term in terms(text):
            query[term] = max(query.get(term, 0.0), weight)
    return query


def rescale(values: Sequence[float]) -> list[float]:
    """To [0, 1] by the maximum; all-zero stays all-zero."""
    top = max(values, default=0.0)
    if top <= 0.0:
        return [0.0 for _ in values]
    return [v / top for v in values]


def cosine_to_query(
    embedder: Embedder, query: str, texts: Sequence[str], batch: int = 32
) -> list[float]:
    """Cosine similarity of each text to the query, rescaled to [0, 1] across the texts.

    Texts are embedded in batches of similar length: a batch pads to its longest text, so
    sorting first cuts the work several-fold on prose with mixed sentence lengths.
    """
    if not texts:
        return []
    q = embedder.embed([query])[0]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    sims = np.zeros(len(texts), dtype=np.float32)
    for lo in range(0, len(order), batch):
        idx = order[lo : lo + batch]
        sims[idx] = embedder.embed([texts[i] for i in idx]) @ q
    low, high = float(sims.min()), float(sims.max())
    if high - low < 1e-9:
        return [0.0 for _ in texts]
    return [(float(s) - low) / (high - low) for s in sims]
