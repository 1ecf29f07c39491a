"""Vetoes semantic-cache hits whose questions differ in what matters, and scores the rest.

Embedding similarity alone serves "capital of Germany?" from "capital of France?". The verifier
looks at what differs between the new question and the cached one: numbers, negations,
comparison operators, opposite words, code (symbols, identifiers), names, and content words
that have no counterpart on the other side. Hard differences veto; the rest lower a score
that must pass the threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gateway.cache.text_facts import STOPWORDS, TextFacts, stem

# Maps words to unit vectors (rows), so near-synonyms ("quickly"/"fast") count as matched.
WordVectors = Callable[[Sequence[str]], npt.NDArray[np.float32]]

# score = cos + sum(weight * feature); penalties only, so no feature can ever raise a pair above
# its plain similarity. Chosen on two externally labelled sets (benchmarks/cache_eval.py): Quora
# question pairs and MSRP news sentences, for the most hits with false hits at most 1% on both
# (Quora's hard negatives need the high threshold; see docs/notes/issue-5.md).
DEFAULT_WEIGHTS: dict[str, float] = {
    "unmatched_max": -0.20,  # share of one side's content words with no counterpart
    "unmatched_min": -0.05,
    "name_one_side": -0.10,  # a name only one side mentions
    "intent_conflict": -0.10,  # they ask for different kinds of answer (why vs is, when vs did)
    # a word swapped for one that is no synonym ("kitchen" / "bathroom", "junior" / "senior",
    # "declining" / "accepting") costs the same in a long prompt as in a short question
    "substitution": -0.03,
}
DEFAULT_MIN_COS = 0.80  # below this an entry is never a candidate
DEFAULT_SCORE_THRESHOLD = 0.93  # the penalised score a hit must reach
SYNONYM_COS = 0.80  # word vectors at least this close count as the same word


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    score: float
    reason: str  # "ok", or the veto that fired ("numbers", "negation", "names"...)
    features: dict[str, float]


@dataclass(frozen=True, slots=True)
class VerifierConfig:
    min_cos: float = DEFAULT_MIN_COS
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    synonym_cos: float = SYNONYM_COS
    weights: tuple[tuple[str, float], ...] = tuple(DEFAULT_WEIGHTS.items())


class PairVerifier:
    """Decides whether a cached question may answer a new one."""

    def __init__(
        self, config: VerifierConfig | None = None, word_vectors: WordVectors | None = None
    ) -> None:
        self.config = config or VerifierConfig()
        self._weights = dict(self.config.weights)
        self._word_vectors = word_vectors

    def verify(self, query: TextFacts, cached: TextFacts, cos: float) -> Verdict:
        if cos < self.config.min_cos:
            return Verdict(False, 0.0, "similarity", {"cos": cos})
        veto = hard_difference(query, cached)
        if veto is not None:
            return Verdict(False, 0.0, veto, {"cos": cos})
        if max(len(query.tokens), len(cached.tokens)) > LONG_TURN_WORDS and self._recounted(
            query, cached
        ):
            return Verdict(False, 0.0, "long_text", {"cos": cos})
        feats = self.features(query, cached, cos)
        if feats["names_both_sides"] > 0:
            return Verdict(False, 0.0, "names", feats)
        score = self.score(feats)
        ok = score >= self.config.score_threshold
        return Verdict(ok, score, "ok" if ok else "score", feats)

    def features(self, query: TextFacts, cached: TextFacts, cos: float) -> dict[str, float]:
        only_q, only_c = self._unmatched(query.content, cached.content)
        names_q = _unmatched_names(query, cached)
        names_c = _unmatched_names(cached, query)
        frac_q = len(only_q) / max(len(query.content), 1)
        frac_c = len(only_c) / max(len(cached.content), 1)
        return {
            "cos": cos,
            "unmatched_max": max(frac_q, frac_c),
            "unmatched_min": min(frac_q, frac_c),
            "unmatched_count": float(len(only_q) + len(only_c)),
            "name_one_side": float(bool(names_q) != bool(names_c)),
            "names_both_sides": float(bool(names_q) and bool(names_c)),
            "intent_conflict": float(intents_conflict(query.intent, cached.intent)),
            "substitution": float(bool(only_q) and bool(only_c)),
        }

    def score(self, feats: dict[str, float]) -> float:
        return feats["cos"] + sum(self._weights.get(k, 0.0) * v for k, v in feats.items())

    def _recounted(self, query: TextFacts, cached: TextFacts) -> bool:
        """Whether a content word occurs more often on one side, with no synonym for it among
        the other side's extra words: in a long turn that is other data or another question."""
        extra_q = query.content_counts - cached.content_counts
        extra_c = cached.content_counts - query.content_counts
        only_q, only_c = self._unmatched(frozenset(extra_q), frozenset(extra_c))
        return bool(only_q or only_c)

    def _unmatched(self, a: frozenset[str], b: frozenset[str]) -> tuple[list[str], list[str]]:
        only_a = sorted(w for w in a - b if not _prefix_match(w, b))
        only_b = sorted(w for w in b - a if not _prefix_match(w, a))
        if not only_a or not only_b or self._word_vectors is None:
            return only_a, only_b
        va = self._word_vectors(only_a)
        vb = self._word_vectors(only_b)
        sims = va @ vb.T
        close = sims >= self.config.synonym_cos
        for i, wa in enumerate(only_a):
            for j, wb in enumerate(only_b):
                if close[i, j] and _other_modifier(wa, wb):
                    close[i, j] = False
        keep_a = [w for w, row in zip(only_a, close, strict=True) if not row.any()]
        keep_b = [w for w, col in zip(only_b, close.T, strict=True) if not col.any()]
        return keep_a, keep_b


# A turn of more words is a document, a template with its data, or a retrieved context with a
# question, not just a question. One changed slot is a small share of it: its cosine nears 1
# and the score's penalties (shares of the content words) shrink, so "<a recipe> Whisk the eggs
# with milk, sugar and salt. What do I whisk the eggs with?" was served the answer for
# "...water, honey and pepper" (0.95); and a question made of the context's own words is no new
# word at all ("What does the company sell?" / "What is the company's mission?" after the same
# context, 0.94-0.99). Such a turn hits only when every content word occurs as often on both
# sides, give or take synonyms (`_recounted`): a rewording of its function words, its wrapping,
# its order. One changed slot scored at most 0.923 up to 16 words (8 templates, 10-32 words).
LONG_TURN_WORDS = 16


# Kinds of answer that never stand in for each other ("Why is X negative?" is not answered by
# "yes"); "what" / "method" / "other" overlap too much ("What is the best way to X?" = "How do I
# X?") to count, and a modal yes/no question is often a "how" ("Can I learn X fast?").
_DISTINCT_INTENTS = frozenset({"reason", "time", "place", "person", "amount"})


def intents_conflict(a: str, b: str) -> bool:
    if a == b or "other" in (a, b):
        return False
    if a in _DISTINCT_INTENTS or b in _DISTINCT_INTENTS:
        return True
    return {a, b} == {"yesno", "method"}  # "Does HIV cause AIDS?" / "How does HIV cause AIDS?"


def hard_difference(a: TextFacts, b: TextFacts) -> str | None:
    """The name of a difference that always changes the answer, or None."""
    if a.verbatim != b.verbatim:
        return "verbatim"  # an identifier, a word of another script, an emoji
    if a.numbers != b.numbers:
        return "numbers"
    if (a.numbers or b.numbers or a.weak_numbers or b.weak_numbers) and _weak_conflict(a, b):
        return "numbers"
    if a.number_order != b.number_order and a.number_span == b.number_span:
        return "numbers"  # the same numbers around the same words, swapped: "10 divided by 2"
    if (
        a.name_order != b.name_order
        and a.name_span
        and a.name_span == b.name_span
        and sorted(a.name_order) == sorted(b.name_order)
    ):
        return "names"  # the same names around the same words, swapped: "A better than B"
    if _asks_other_role(a, b) or _asks_other_role(b, a):
        return "order"  # "Who killed Caesar?" / "Who did Caesar kill?"
    if _swapped_around_direction(a.tokens, b.tokens):
        return "order"  # "miles to km" / "km to miles", "is a dolphin a fish" / "a fish a dolphin"
    if a.when and b.when and a.when != b.when:
        return "time"  # "this year" / "last year", "today" / "tomorrow"
    if a.tense and b.tense and a.tense != b.tense:
        return "time"  # "Is Pluto a planet?" / "Was Pluto a planet?"
    if a.negations != b.negations:
        return "negation"
    if a.operators != b.operators:
        return "comparison"
    sides_a: dict[int, set[int]] = {}
    sides_b: dict[int, set[int]] = {}
    for group, side in a.polar:
        sides_a.setdefault(group, set()).add(side)
    for group, side in b.polar:
        sides_b.setdefault(group, set()).add(side)
    if any(sides_a[g] != sides_b[g] for g in sides_a.keys() & sides_b.keys()):
        return "opposites"
    if _prefix_negation(a, b) or _prefix_negation(b, a):
        return "negation"
    if _flipped_particle(a.tokens, b.tokens):
        return "opposites"  # "zoom in" / "zoom out", "translate from English" / "to English"
    if _other_end_of_a_role(a.tokens, b.tokens):
        return "opposites"  # "the interviewer" / "the interviewee", "the payer" / "the payee"
    if a.quoted != b.quoted and _reordered(a.quoted, b.quoted):
        return "quote"  # the text to check / translate, its words in another order
    if a.code != b.code or ((a.code_like or b.code_like) and a.skeleton != b.skeleton):
        return "code"  # one operator, accessor, quote or identifier changes what code does
    if a.payload is not None and b.payload is not None and a.payload != b.payload:
        return "payload"  # one task, other data: "Classify the sentiment of: <another review>"
    return None


# Words that give the things on either side of them different roles: "miles to km" is not
# "km to miles". ("and", "or", "vs" do not: "a list and a tuple" is "a tuple and a list".)
# Any other word between the two pieces gives them roles too: subject and object ("does stress
# cause acne" / "does acne cause stress"), thing and class ("is a dolphin a fish").
_SYMMETRIC = frozenset({"and", "or", "nor", "vs", "versus", "&", ",", "with"})
_DIRECTIONAL = frozenset({
    "to", "into", "than", "from", "over", "under", "above", "below", "before", "after", "per",
    "onto", "toward", "towards",
})  # fmt: skip


MAX_SWAP_TOKENS = 24


def _swapped_around_direction(a: Sequence[str], b: Sequence[str]) -> bool:
    """The same words, but two pieces exchanged across words that give them roles: where the
    texts differ, `a` reads P M Q and `b` reads Q M P, with M holding one of `_DIRECTIONAL`, or
    P, M and Q short and M holding none of `_SYMMETRIC` (`_gives_roles`)."""
    if len(a) != len(b) or a == b or sorted(a) != sorted(b):
        return False
    first = next(i for i in range(len(a)) if a[i] != b[i])
    last = next(i for i in range(len(a) - 1, -1, -1) if a[i] != b[i])
    seg_a, seg_b = list(a[first : last + 1]), list(b[first : last + 1])
    n = len(seg_a)
    if n > MAX_SWAP_TOKENS:  # a long reordering is a rewrite, and this search is cubic
        return False
    for p in range(1, n):
        for q in range(1, n - p + 1):
            middle = seg_a[p : n - q]
            if seg_b == seg_a[n - q :] + middle + seg_a[:p] and _gives_roles(seg_a, p, q):
                return True
    return False


# Beyond a directional word, only a swap of short pieces across a short middle: a news rewrite
# moves whole clauses around a verb ('"...," said X' / 'X said: "..."'), a question swaps its
# subject and object.
MAX_ROLE_PIECE = 3


def _gives_roles(seg: Sequence[str], p: int, q: int) -> bool:
    """Whether the middle of `seg` (all but its first `p` and last `q` tokens) gives the two
    pieces around it different roles."""
    middle = seg[p : len(seg) - q]
    if _DIRECTIONAL.intersection(middle):
        return True
    if not middle or _SYMMETRIC.intersection(middle):
        return False
    return max(p, q, len(middle)) <= MAX_ROLE_PIECE


# "Who killed Caesar?" asks for the killer, "Who did Caesar kill?" for the killed: a wh-word
# followed by do / does / did is the object of the verb, one followed by the verb its subject.
_ROLE_WH = frozenset({"who", "whom", "what", "which"})
_DO = frozenset({"do", "does", "did"})


def _wh_role(tokens: Sequence[str]) -> str | None:
    """'subject' or 'object' for a question opening "who / what + verb" or "who / what + do",
    None for any other opening ("what is", "who was", "which book")."""
    if len(tokens) < 3 or tokens[0] not in _ROLE_WH:
        return None
    if tokens[1] in _DO:
        return "object"
    if tokens[1] in STOPWORDS:
        return None  # "what is", "who can"
    if tokens[0] != "who" and stem(tokens[1]) == tokens[1]:
        return None  # "what book", "which language": a verb after what / which only if inflected
    return "subject"


def _asks_other_role(subj: TextFacts, obj: TextFacts) -> bool:
    """`subj` asks who does the verb, `obj` whom it is done to, about the same words (the
    verb may be spelt otherwise: "wrote" / "write")."""
    if _wh_role(subj.tokens) != "subject" or _wh_role(obj.tokens) != "object":
        return False
    verb = stem(subj.tokens[1])
    return subj.content - {verb} <= obj.content and len(obj.content - subj.content) <= 1


def _reordered(a: Sequence[Sequence[str]], b: Sequence[Sequence[str]]) -> bool:
    """The same quoted words in another order. A quote is the text to check, translate or
    rewrite, so "and" does not make its parts interchangeable there: a grammar check of "Me and
    him went" is not one of "Him and me went"."""
    if len(a) != len(b):
        return False
    return any(x != y and sorted(x) == sorted(y) for x, y in zip(a, b, strict=True))


# Particles and prepositions that point opposite ways. They are in almost every question ("in
# Python", "to a list"), so they count only where they are the whole difference.
_OPPOSITE_PARTICLES: tuple[tuple[frozenset[str], frozenset[str]], ...] = (
    (frozenset({"in", "into"}), frozenset({"out"})),
    (frozenset({"on", "onto"}), frozenset({"off"})),
    (frozenset({"to", "into", "toward", "towards"}), frozenset({"from"})),
    (frozenset({"for"}), frozenset({"against"})),
)
MAX_FLIP_SPAN = 3


def _flipped_particle(a: Sequence[str], b: Sequence[str]) -> bool:
    """Where the texts differ (at most `MAX_FLIP_SPAN` tokens each), a particle or its opposite
    changes which ways the texts point: "zoom in on" / "zoom out on", "arguments for" /
    "against", "arguments for and against" / "arguments against"."""
    n = min(len(a), len(b))
    lead = 0
    while lead < n and a[lead] == b[lead]:
        lead += 1
    tail = 0
    while tail < n - lead and a[len(a) - 1 - tail] == b[len(b) - 1 - tail]:
        tail += 1
    span_a, span_b = a[lead : len(a) - tail], b[lead : len(b) - tail]
    if not (span_a or span_b) or max(len(span_a), len(span_b)) > MAX_FLIP_SPAN:
        return False
    changed, all_a, all_b = set(span_a) | set(span_b), set(a), set(b)
    for one, other in _OPPOSITE_PARTICLES:
        if not changed & (one | other):
            continue
        sides_a = (bool(all_a & one), bool(all_a & other))
        sides_b = (bool(all_b & one), bool(all_b & other))
        # each text points somewhere, both ways are named, not by both alike ("for and
        # against" / "against"); "from 1990 to 2000" / "between 1990 and 2000" points nowhere
        points = any(sides_a) and any(sides_b)
        both_ways = (sides_a[0] or sides_b[0]) and (sides_a[1] or sides_b[1])
        if sides_a != sides_b and points and both_ways:
            return True
    return False


def _weak_conflict(a: TextFacts, b: TextFacts) -> bool:
    """'one'/'first' count as numbers only against a side that has digits to compare with."""
    if a.weak_numbers == b.weak_numbers:
        return False
    extra_a = a.weak_numbers - b.weak_numbers
    extra_b = b.weak_numbers - a.weak_numbers
    return bool((extra_a and b.numbers) or (extra_b and a.numbers))


_NEG_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non", "non-", "a")


def _other_end_of_a_role(a: Sequence[str], b: Sequence[str]) -> bool:
    """One side names who does it ("interviewer", "employer", "lessor"), the other who it is
    done to ("interviewee", "employee", "lessee"). The stems match, so the word rules took them
    for one word ("What should the interviewer ask?" was served the interviewee's answer)."""
    ra, rb = _roles(a), _roles(b)
    return any(
        (base, 1 - role) in rb and (base, 1 - role) not in ra and (base, role) not in rb
        for base, role in ra
    )


def _roles(tokens: Sequence[str]) -> set[tuple[str, int]]:
    out: set[tuple[str, int]] = set()
    for token in tokens:
        word = token[:-1] if token.endswith("s") else token
        if len(word) >= 5 and word.isalpha():
            if word.endswith("ee"):
                out.add((word[:-2], 1))
            elif word.endswith(("er", "or")):
                out.add((word[:-2], 0))
    return out


def _prefix_negation(a: TextFacts, b: TextFacts) -> bool:
    """'possible' vs 'impossible', 'safe' vs 'unsafe': the same word with a negating prefix."""
    words_a = _joined_words(a.tokens, 4)
    words_b = _joined_words(b.tokens, 6)
    for w in words_b - words_a:
        for p in _NEG_PREFIXES:
            if w.startswith(p) and w[len(p) :] in words_a:
                return True
    return False


# Endings that make a word a kind of word, not a thing: two words sharing only these
# ("explanation" / "clarification") may still be synonyms.
_SUFFIX_TEXT = (
    "ation ition tion sion ment ness able ible ally ical ity ous ful less ive ize ise ing ed er "
    "est ly al ic ant ent ance ence ship hood ist ism"
)
_SUFFIXES = tuple(sorted(_SUFFIX_TEXT.split(), key=len, reverse=True))


def _other_modifier(a: str, b: str) -> bool:
    """One head with another word before it: 'backend' / 'frontend', 'upload' / 'download',
    'inbound' / 'outbound'. Word vectors put such pairs close together (same head, same
    contexts), but the modifier is what the question is about, so they are no synonyms."""
    if a[0] == b[0]:
        return False
    shared = _shared_prefix(a[::-1], b[::-1])
    if shared < 3 or len(a) - shared < 2 or len(b) - shared < 2:
        return False
    head = a[len(a) - shared :]
    for suffix in _SUFFIXES:
        if head.endswith(suffix):
            head = head[: len(head) - len(suffix)]
            break
    return len(head) >= 3


def _joined_words(tokens: Sequence[str], min_len: int) -> set[str]:
    """The words of at least `min_len` letters, "non-technical" (two tokens) read as one."""
    out: set[str] = set()
    after_non = False
    for t in tokens:
        word = f"non{t}" if after_non else t
        after_non = t == "non"
        if word.isalpha() and len(word) >= min_len and word != "non":
            out.add(word)
    return out


def _prefix_match(word: str, others: frozenset[str]) -> bool:
    """'fast' ~ 'faster', 'america' ~ 'american': one word plus at most three letters; or one
    stem of five letters or more with different short endings ('summary' ~ 'summarize',
    'simple' ~ 'simply')."""
    if len(word) < 4:
        return False
    for other in others:
        if len(other) < 4 or other[:4] != word[:4]:
            continue
        short, long = (word, other) if len(word) <= len(other) else (other, word)
        if long.startswith(short) and len(long) - len(short) <= 3:
            return True
        shared = _shared_prefix(word, other)
        if shared >= 5 and len(word) - shared <= 3 and len(other) - shared <= 3:
            return True
    return False


def _shared_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _unmatched_names(a: TextFacts, b: TextFacts) -> set[str]:
    """Names (capitalised or acronyms) in `a` that `b` does not mention in any case."""
    words_b = set(b.tokens)
    stems_b = {stem(t) for t in b.tokens}
    initials_b = _initials(b.tokens)
    out: set[str] = set()
    for name in a.names | a.acronyms:
        if name in words_b or stem(name) in stems_b:
            continue
        if name in initials_b or _prefix_match(stem(name), frozenset(stems_b)):
            continue
        out.add(name)
    return out


def _initials(tokens: Sequence[str]) -> set[str]:
    """Acronyms the token sequence could spell: 'united states' -> 'us'."""
    out: set[str] = set()
    alpha = [t for t in tokens if t.isalpha()]
    for n in (2, 3, 4):
        for i in range(len(alpha) - n + 1):
            out.add("".join(t[0] for t in alpha[i : i + n]))
    return out
