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


def test_reasoning_reported_outside_the_completion_count_is_billed() -> None:
    """xAI (Grok) counts reasoning outside `completion_tokens` but in `total_tokens`, and bills
    it as output: 386 reasoning tokens of a 387-token answer were billed as 1 (hunt9 h2)."""
    usage = {
        "prompt_tokens": 12,
        "completion_tokens": 1,
        "total_tokens": 399,
        "completion_tokens_details": {"reasoning_tokens": 386},
    }
    assert billed(usage) == (12, 387, "upstream")


def test_reasoning_inside_the_completion_count_is_not_billed_twice() -> None:
    usage = {  # OpenAI: reasoning is part of completion_tokens, and the total says so
        "prompt_tokens": 12,
        "completion_tokens": 400,
        "total_tokens": 412,
        "completion_tokens_details": {"reasoning_tokens": 386},
    }
    assert billed(usage) == (12, 400, "upstream")
    del usage["total_tokens"]  # no total to tell: as reported
    assert billed(usage) == (12, 400, "upstream")


def cached(usage: dict) -> int:
    return usage_of(bare_context(body={"messages": []}), {**BODY, "usage": usage}).cached_tokens


def test_deepseeks_own_cache_hit_count_is_read() -> None:
    """DeepSeek's API reports prompt-cache hits as top-level `prompt_cache_hit_tokens` (no
    `prompt_tokens_details`): they were billed at the full input price (hunt9 h2)."""
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 10,
        "total_tokens": 1010,
        "prompt_cache_hit_tokens": 896,
        "prompt_cache_miss_tokens": 104,
    }
    assert cached(usage) == 896
    nested = {**usage, "prompt_tokens_details": {"cached_tokens": 512}}  # a proxy's: it wins
    assert cached(nested) == 512


def test_responses_usage_reads_providers_as_the_ledger_does() -> None:
    """The Responses API's usage is translated from the chat upstream's: OpenAI's semantics
    (output includes reasoning), and the counts the ledger billed (hunt9 h2)."""
    from gateway.pipeline.responses_reply import usage_from_chat

    xai = {
        "prompt_tokens": 12,
        "completion_tokens": 1,
        "total_tokens": 399,
        "completion_tokens_details": {"reasoning_tokens": 386},
    }
    out = usage_from_chat(xai)
    assert out is not None
    assert (out["output_tokens"], out["total_tokens"]) == (387, 399)
    assert out["output_tokens_details"]["reasoning_tokens"] == 386
    deepseek = {"prompt_tokens": 1000, "completion_tokens": 10, "prompt_cache_hit_tokens": 896}
    out = usage_from_chat(deepseek)
    assert out is not None and out["input_tokens_details"]["cached_tokens"] == 896
