"""What the ledger bills from an upstream's usage block, as providers really send it."""

from gateway.pipeline.account import usage_of
from tests.support.context import bare_context

BODY = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"}}]}


def billed(usage: dict) -> tuple[int, int, str]:
    u = usage_of(bare_context(body={"messages": []}), {**BODY, "usage": usage})
    return u.prompt_tokens, u.completion_tokens, u.source


def test_whole_number_floats_are_counts() -> None:
    assert billed({"prompt_tokens": 1000.0, "completion_tokens": 500.0}) == (1000, 500, "upstream")


def test_a_missing_completion_count_comes_from_the_total() -> None:
    assert billed({"prompt_tokens": 1000, "total_tokens": 1500}) == (1000, 500, "upstream")


def test_a_missing_completion_count_without_a_total_counts_the_text() -> None:
    prompt, completion, source = billed({"prompt_tokens": 1000})
    assert (prompt, source) == (1000, "upstream") and completion > 0


def test_nonsense_is_not_a_count() -> None:
    assert billed({"prompt_tokens": 10.5, "completion_tokens": 3})[2] == "tiktoken"
    assert billed({"prompt_tokens": 10, "completion_tokens": -1})[1] > 0  # counted instead
