"""Query-aware extractive compression: keep the most relevant sentences within a token budget.

Prose is cut into sentences (lines count as sentences), each scored by its relevance to the
query (the last user turn): sentence BM25, the BM25 of its paragraph (RAG passages live or die
together), its neighbours' scores, and the embedding cosine when an embedder is available. The
best sentences are kept until the budget is spent and are put back in their original order,
byte-identical. Code, JSON and table segments are not units: they are kept whole.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.compression.relevance import BM25, Embedder, cosine_to_query, rescale, terms
from gateway.compression.segments import Segment
from gateway.compression.sentences import sentence_spans
from gateway.compression.tokens import TokenCounter


@dataclass(frozen=True, slots=True)
class ScoreWeights:
    sentence: float = 0.45
    paragraph: float = 0.35
    neighbour: float = 0.20
    embedding: float = 0.5  # when an embedder is present, BM25 terms above share the rest


@dataclass(slots=True)
class _Unit:
    para: int
    start: int
    end: int
    tokens: int
    score: float = 0.0


@dataclass(slots=True)
class _Paragraph:
    text: str
    units: list[_Unit]


class ExtractiveCompressor:
    """Selects sentences of many prose texts against one query and one shared token budget."""

    def __init__(
        self,
        counter: TokenCounter,
        embedder: Embedder | None = None,
        weights: ScoreWeights | None = None,
        embed_max_tokens: int = 8000,
    ) -> None:
        self.counter = counter
        self.embedder = embedder
        self.weights = weights or ScoreWeights()
        # Embedding every sentence costs ~0.1-0.7 s per 1k tokens on a small CPU; past this
        # size the lexical scores decide alone.
        self.embed_max_tokens = embed_max_tokens

    def compress(
        self, docs: Sequence[list[Segment]], query: dict[str, float], query_text: str, ratio: float
    ) -> list[list[Segment]]:
        """Return each doc's segments with its prose cut to about `1/ratio` of the tokens."""
        paragraphs: list[_Paragraph] = []
        layout: list[list[tuple[Segment, list[int]]]] = []
        for segments in docs:
            doc_layout: list[tuple[Segment, list[int]]] = []
            for seg in segments:
                if seg.kind != "text":
                    doc_layout.append((seg, []))
                    continue
                ids = []
                for para_text in seg.text.strip("\n").split("\n\n"):
                    pid = len(paragraphs)
                    units = [
                        _Unit(pid, s, e, self.counter.count(para_text[s:e]))
                        for s, e in sentence_spans(para_text)
                    ]
                    paragraphs.append(_Paragraph(para_text, units))
                    ids.append(pid)
                doc_layout.append((seg, ids))
            layout.append(doc_layout)

        units = [u for p in paragraphs for u in p.units]
        total = sum(u.tokens for u in units)
        budget = math.ceil(total / max(ratio, 1.0))
        if not units or budget >= total:
            return [list(segs) for segs in docs]
        self._score(
            paragraphs, units, query, query_text, use_embedder=total <= self.embed_max_tokens
        )
        kept = _select(units, budget)
        return [
            [self._rebuild(seg, ids, paragraphs, kept) for seg, ids in doc_layout]
            for doc_layout in layout
        ]

    def _score(
        self,
        paragraphs: list[_Paragraph],
        units: list[_Unit],
        query: dict[str, float],
        query_text: str,
        *,
        use_embedder: bool,
    ) -> None:
        w = self.weights
        texts = [paragraphs[u.para].text[u.start : u.end] for u in units]
        sent = rescale(BM25([terms(t) for t in texts]).scores(query))
        para_scores = rescale(BM25([terms(p.text) for p in paragraphs]).scores(query))
        neighbour = [
            max(
                sent[i - 1] if i > 0 and units[i - 1].para == u.para else 0.0,
                sent[i + 1] if i + 1 < len(units) and units[i + 1].para == u.para else 0.0,
            )
            for i, u in enumerate(units)
        ]
        lexical = [
            w.sentence * s + w.paragraph * para_scores[u.para] + w.neighbour * n
            for s, u, n in zip(sent, units, neighbour, strict=True)
        ]
        if self.embedder is not None and use_embedder and query_text.strip():
            cos = cosine_to_query(self.embedder, query_text, texts)
            lexical = [
                w.embedding * c + (1.0 - w.embedding) * x for c, x in zip(cos, lexical, strict=True)
            ]
        # A hair of position so equal scores keep earlier text (stable, deterministic).
        for i, (u, score) in enumerate(zip(units, lexical, strict=True)):
            u.score = score - i * 1e-9

    def _rebuild(
        self,
        seg: Segment,
        ids: list[int],
        paragraphs: list[_Paragraph],
        kept: set[int],
    ) -> Segment:
        if seg.kind != "text":
            return seg
        out_paras = []
        for pid in ids:
            para = paragraphs[pid]
            pieces: list[str] = []
            last_end: int | None = None
            adjacent = False
            for u in para.units:
                if id(u) not in kept:
                    adjacent = False
                    continue
                if last_end is not None:
                    gap = para.text[last_end : u.start]
                    # Neighbours keep their exact separator; across a cut, one space or newline
                    # (none where the text had none, as between Chinese sentences).
                    pieces.append(gap if adjacent else _cut_separator(gap))
                pieces.append(para.text[u.start : u.end])
                last_end = u.end
                adjacent = True
            if pieces:
                out_paras.append("".join(pieces))
        core = seg.text.strip("\n")
        lead = seg.text[: len(seg.text) - len(seg.text.lstrip("\n"))]
        trail = seg.text[len(seg.text.rstrip("\n")) :]
        if not out_paras:
            return Segment("text", max(lead, trail, key=len)[:2] if core else seg.text)
        return Segment("text", lead + "\n\n".join(out_paras) + trail)


def _select(units: list[_Unit], budget: int) -> set[int]:
    """Greedy by score: take each unit that still fits; return the ids of the kept ones."""
    kept: set[int] = set()
    spent = 0
    for u in sorted(units, key=lambda x: x.score, reverse=True):
        if spent + u.tokens <= budget:
            kept.add(id(u))
            spent += u.tokens
    return kept


def _cut_separator(gap: str) -> str:
    if "\n" in gap:
        return "\n"
    return " " if gap else ""
