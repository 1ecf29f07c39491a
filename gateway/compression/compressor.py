"""The prompt compressor: runs the chosen mode over a chat's messages and decides if it pays.

Order of work, per request:
1. count the prompt; a short one goes out as it is;
2. a prefix already sent before (`PrefixMemory`) is reused byte for byte;
3. the variable tail: lossless normalisation and duplicate removal, then (balanced) extractive
   selection against the last user turn, then (aggressive) surprisal pruning;
4. if the saving is below the thresholds, the tail goes out unchanged.

Never touched unless the options allow it: system/developer messages, the last user turn, code
blocks, and anything outside `messages` (tool schemas, tool calls, images).
"""

from __future__ import annotations

import copy
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Protocol

from gateway.compression.extractive import ExtractiveCompressor
from gateway.compression.lossless import DuplicateBlocks, join_segments, lossless_segments
from gateway.compression.options import CompressionOptions
from gateway.compression.prefix import PrefixMemory
from gateway.compression.relevance import Embedder, terms, weighted_query
from gateway.compression.segments import Segment, split_segments
from gateway.compression.sentences import sentence_spans
from gateway.compression.surprisal import protected_word
from gateway.compression.tokens import TokenCounter

log = logging.getLogger("thriftgate.compression")

Json = dict[str, Any]
_RAW_WORD = re.compile(r"[^\W_]+")  # query words of any script, protected from pruning
MILLION = Decimal(1_000_000)
INSTRUCTION_ROLES = frozenset({"system", "developer"})
MAX_QUERY_CONTEXT_CHARS = 1200
# What the aggressive mode's pruner reads per request (see `_within_prune_budget`); each call
# counts at least this much, for the model's fixed cost per call.
MAX_PRUNED_TOKENS = 8192
MIN_PRUNE_CALL_TOKENS = 64
HISTORY_DECAY = 0.75  # each older turn counts this much less in the query
MIN_HISTORY_WEIGHT = 0.1


class Pruner(Protocol):
    """Token-level pruning of prose (the aggressive mode), e.g. by a local LM's surprisal."""

    def prune(self, text: str, fraction: float, protect: frozenset[str]) -> str:
        """Drop about `fraction` of the words of `text`; never words in `protect`."""
        ...


@dataclass(slots=True)
class CompressionResult:
    messages: list[Json]
    method: str  # "off", "lossless", "balanced", "aggressive"; "prefix": only a reused prefix
    tokens_before: int
    tokens_after: int
    saved_usd: Decimal = Decimal(0)
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.method != "off"

    @property
    def header(self) -> str:
        return f"{self.method} {self.tokens_before}->{self.tokens_after}"


@dataclass(slots=True)
class _Slot:
    msg: int
    part: int | None  # None: `content` is a string; else the index of a text part
    text: str
    tokens: int
    protected: bool


class PromptCompressor:
    """Stateless per request apart from the prefix memory; safe to call from worker threads
    as long as one request is not compressed twice at the same time."""

    def __init__(
        self,
        counter: TokenCounter,
        *,
        embedder: Embedder | None = None,
        pruner: Pruner | None = None,
        memory: PrefixMemory | None = None,
    ) -> None:
        self.counter = counter
        self.pruner = pruner
        self.memory = memory
        self.extractive = ExtractiveCompressor(counter, embedder)

    def compress(
        self,
        messages: Sequence[Json],
        options: CompressionOptions,
        *,
        input_price_per_mtok: Decimal | None = None,
        scope: str = "",
    ) -> CompressionResult:
        slots = self._slots(messages, options)
        before = sum(s.tokens for s in slots)
        unchanged = CompressionResult(list(messages), "off", before, before)
        if options.mode == "off":
            return unchanged
        if before < options.min_prompt_tokens:
            unchanged.notes.append("short prompt")
            return unchanged

        # What was sent is remembered per set of options: a `lossless` request must never get
        # back a prefix that an earlier `balanced` request of the same chat cut down.
        scope = f"{scope}\x00{options!r}"
        frozen = self.memory.recall(scope, messages) if self.memory is not None else []
        price = input_price_per_mtok
        fresh: CompressionResult | None = None
        if frozen and options.mode in ("balanced", "aggressive"):
            # A prefix cut for an earlier question is reused only while it holds what this
            # question needs: the relevant sentences a fresh extraction keeps for it (the
            # extraction alone: no second pass of the pruner's model).
            probe = self._compress_after(
                [], messages, slots, replace(options, mode="balanced"), price
            )
            if not _covers(probe, frozen, messages, pruned=options.mode == "aggressive"):
                fresh = probe
                if options.mode == "aggressive":
                    fresh = self._compress_after([], messages, slots, options, price)
                fresh.notes.append("remembered prefix lacks sentences this question needs")
                frozen = []
        result = fresh or self._compress_after(frozen, messages, slots, options, price)
        if self.memory is not None:
            self.memory.remember(scope, messages, result.messages, replace=not frozen)
        return result

    def _compress_after(
        self,
        frozen: list[Json],
        messages: Sequence[Json],
        all_slots: list[_Slot],
        options: CompressionOptions,
        price: Decimal | None,
    ) -> CompressionResult:
        """Compress what follows the `frozen` prefix (sent as it was remembered)."""
        slots = [copy.copy(s) for s in all_slots]  # the modes rewrite the tail's slots
        before = sum(s.tokens for s in slots)
        out = [copy.copy(m) for m in messages]
        out[: len(frozen)] = frozen
        tail = [s for s in slots if s.msg >= len(frozen)]
        prefix_slots = self._slots(frozen, options) if frozen else []
        notes: list[str] = []
        method = self._run_modes(prefix_slots, tail, messages, options, notes)

        new_texts = {(s.msg, s.part): s.text for s in tail}
        after = sum(s.tokens for s in prefix_slots) + sum(s.tokens for s in tail)
        frozen_before = sum(s.tokens for s in slots if s.msg < len(frozen))
        tail_before = before - frozen_before
        tail_after = sum(s.tokens for s in tail)
        saved = tail_before - tail_after
        price = price or Decimal(0)
        saved_usd = Decimal(saved) * price / MILLION
        if saved < options.min_saved_tokens or saved_usd < options.min_saved_usd:
            # Not worth it: the tail goes out as the client wrote it; the prefix stays as sent.
            notes.append(f"saving below threshold ({saved} tokens)")
            new_texts = {}
            after = before - frozen_before + sum(s.tokens for s in prefix_slots)
            # A prefix compressed on an earlier turn still goes out as it was sent then.
            method = "prefix" if frozen and after != before else "off"
        saved_usd = Decimal(before - after) * price / MILLION
        for (msg, part), text in new_texts.items():
            out[msg] = _with_text(out[msg], part, text)
        return CompressionResult(out, method, before, after, saved_usd, notes)

    def _run_modes(
        self,
        prefix_slots: list[_Slot],
        tail: list[_Slot],
        messages: Sequence[Json],
        options: CompressionOptions,
        notes: list[str],
    ) -> str:
        dupes = DuplicateBlocks()
        for s in prefix_slots:
            dupes.observe(split_segments(s.text))
        segs: dict[int, list[Segment]] = {}
        for i, s in enumerate(tail):
            if s.protected:
                dupes.observe(split_segments(s.text))
                continue
            segs[i] = dupes.remove_repeats(lossless_segments(s.text))
        method = "lossless"
        if options.mode in ("balanced", "aggressive"):
            method = "balanced"
            self._extract(tail, segs, messages, options)
            if options.mode == "aggressive":
                if self.pruner is None:
                    notes.append("aggressive unavailable (no local model): ran balanced")
                elif self._prune(segs, messages, options, notes):
                    method = "aggressive"
        for i, seg_list in segs.items():
            text = join_segments(seg_list)
            if text == "" and tail[i].text.strip():
                text = "[duplicate of an earlier message omitted]"
            if text != tail[i].text:
                tail[i].text = text
                tail[i].tokens = self.counter.count(text)
        return method

    def _prune(
        self,
        segs: dict[int, list[Segment]],
        messages: Sequence[Json],
        options: CompressionOptions,
        notes: list[str],
    ) -> bool:
        assert self.pruner is not None
        last = _last_user_index(messages)
        protect = frozenset(
            _RAW_WORD.findall(message_text(messages[last]).lower()) if last is not None else ()
        )
        chosen = self._within_prune_budget(segs)
        try:
            pruned = {
                i: [
                    Segment("text", self.pruner.prune(g.text, options.prune_fraction, protect))
                    if g.kind == "text" and (i, j) in chosen
                    else g
                    for j, g in enumerate(seg_list)
                ]
                for i, seg_list in segs.items()
            }
        except Exception as exc:  # a model that fails to load must not fail the request
            log.warning("aggressive compression failed, using balanced: %s", exc)
            notes.append(f"aggressive failed ({type(exc).__name__}): ran balanced")
            return False
        texts = sum(g.kind == "text" for seg_list in segs.values() for g in seg_list)
        if len(chosen) < texts:
            notes.append(f"pruned the {len(chosen)} longest of {texts} passages (budget)")
        segs.update(pruned)
        return True

    def _within_prune_budget(self, segs: dict[int, list[Segment]]) -> set[tuple[int, int]]:
        """The text segments the pruner reads, longest first, `MAX_PRUNED_TOKENS` at most: its
        model reads a few hundred tokens a second per core, one request at a time, and goes on
        after the client has gone, so 10,000 short turns (4 MB of body) held it, and every
        other tenant's aggressive request, for minutes."""
        sized = sorted(
            (
                (max(self.counter.count(g.text), MIN_PRUNE_CALL_TOKENS), i, j)
                for i, seg_list in segs.items()
                for j, g in enumerate(seg_list)
                if g.kind == "text" and g.text.strip()
            ),
            key=lambda t: (-t[0], t[1], t[2]),
        )
        chosen: set[tuple[int, int]] = set()
        spent = 0
        for tokens, i, j in sized:
            if spent + tokens <= MAX_PRUNED_TOKENS:
                chosen.add((i, j))
                spent += tokens
        return chosen

    def _extract(
        self,
        tail: list[_Slot],
        segs: dict[int, list[Segment]],
        messages: Sequence[Json],
        options: CompressionOptions,
    ) -> None:
        query_parts = _query_parts(messages, options.compress_last_user)
        if not query_parts:
            return
        last_user = _last_user_index(messages)
        for i in segs:
            if options.compress_code:
                # Allowed by the tenant: code lines compete like sentences.
                segs[i] = [Segment("text", g.text) if g.kind == "code" else g for g in segs[i]]
            if tail[i].msg == last_user:
                segs[i] = _keep_last_paragraph(segs[i])
        chosen = [
            i
            for i in segs
            if tail[i].tokens >= options.min_message_tokens
            and any(g.kind == "text" for g in segs[i])
        ]
        if not chosen:
            return
        query = weighted_query(query_parts)
        cut = self.extractive.compress(
            [segs[i] for i in chosen], query, query_parts[0][0], options.target_ratio
        )
        for i, new in zip(chosen, cut, strict=True):
            segs[i] = new

    def _slots(self, messages: Sequence[Json], options: CompressionOptions) -> list[_Slot]:
        last_user = _last_user_index(messages)
        slots: list[_Slot] = []
        for i, m in enumerate(messages):
            role = m.get("role")
            protected = (role in INSTRUCTION_ROLES and not options.compress_system) or (
                i == last_user and not options.compress_last_user
            )
            content = m.get("content")
            if isinstance(content, str):
                slots.append(_Slot(i, None, content, self.counter.count(content), protected))
            elif isinstance(content, list):
                for j, part in enumerate(content):
                    if isinstance(part, dict) and part.get("type") == "text":
                        text = part.get("text")
                        if isinstance(text, str):
                            slots.append(_Slot(i, j, text, self.counter.count(text), protected))
        return slots


def _last_user_index(messages: Sequence[Json]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    return None


def message_text(message: Json) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _query_parts(messages: Sequence[Json], last_paragraph_only: bool) -> list[tuple[str, float]]:
    """The last user turn (weight 1), then earlier short turns with decaying weights: follow-up
    questions lean on them ("who created him?"). Long earlier turns are documents, not
    questions, and are left out."""
    last = _last_user_index(messages)
    if last is None:
        return []
    text = message_text(messages[last])
    if last_paragraph_only:
        text = text.strip().rsplit("\n\n", 1)[-1]
    parts = [(text, 1.0)]
    user_weight, assistant_weight = 0.5, 0.3
    for i in range(last - 1, -1, -1):
        earlier = message_text(messages[i])
        if len(earlier) > MAX_QUERY_CONTEXT_CHARS:
            continue
        role = messages[i].get("role")
        if role == "user":
            parts.append((earlier, user_weight))
            user_weight *= HISTORY_DECAY
        elif role == "assistant":
            parts.append((earlier, assistant_weight))
            assistant_weight *= HISTORY_DECAY
        if user_weight < MIN_HISTORY_WEIGHT:
            break
    return [p for p in parts if p[0].strip()]


def _covers(
    fresh: CompressionResult, frozen: Sequence[Json], messages: Sequence[Json], *, pruned: bool
) -> bool:
    """Does the remembered prefix hold the sentences of it that a fresh compression keeps and
    that matter to the question: those sharing at least half as many of the last user turn's
    terms as the best one. A `pruned` prefix (aggressive) must hold the words of them that the
    pruner never drops (the question's words, numbers, names)."""
    last = _last_user_index(messages)
    last_text = message_text(messages[last]) if last is not None else ""
    query = set(terms(last_text))
    if not query:
        return True
    keep = protected_word(frozenset(_RAW_WORD.findall(last_text.lower())))
    relevant: list[tuple[int, str, str]] = []
    for new, old in zip(fresh.messages, frozen, strict=False):
        text = message_text(new)
        for a, b in sentence_spans(text):
            overlap = len(query.intersection(terms(text[a:b])))
            if overlap:
                relevant.append((overlap, text[a:b], message_text(old)))
    if not relevant:
        return True
    floor = max(1, math.ceil(max(o for o, _s, _t in relevant) / 2))
    for overlap, sentence, sent_before in relevant:
        if overlap < floor:
            continue
        if pruned:
            needed = {w for w in sentence.split() if keep(w)}
            if not needed <= set(sent_before.split()):
                return False
        elif sentence not in sent_before:
            return False
    return True


def _keep_last_paragraph(segments: list[Segment]) -> list[Segment]:
    """The last user turn, when it may be cut: its final paragraph (the question) stays whole."""
    for k in range(len(segments) - 1, -1, -1):
        seg = segments[k]
        if seg.kind != "text" or not seg.text.strip():
            continue
        body = seg.text.rstrip()
        cut = body.rfind("\n\n")
        head = [Segment("text", body[:cut])] if cut > 0 else []
        tail = Segment("keep", body[cut:] if cut > 0 else body)
        rest = [Segment("keep", seg.text[len(body) :])] if len(body) < len(seg.text) else []
        return segments[:k] + head + [tail, *rest] + segments[k + 1 :]
    return segments


def _with_text(message: Json, part: int | None, text: str) -> Json:
    new = dict(message)
    if part is None:
        new["content"] = text
    else:
        content = list(new["content"])
        content[part] = {**content[part], "text": text}
        new["content"] = content
    return new
