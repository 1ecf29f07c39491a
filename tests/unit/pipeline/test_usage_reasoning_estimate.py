"""An upstream that reports no usage is billed on tiktoken's count of what it generated: the
reasoning of a reasoning model (Ollama's `reasoning`, vLLM's and llama.cpp's
`reasoning_content`) is generated output too, often most of it."""

import pytest

from gateway.pipeline.account import usage_of
from tests.support.context import bare_context

THOUGHT = "The user wants the capital of France. That is Paris, a well known fact. " * 10


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
def test_reasoning_is_counted_when_the_upstream_reports_no_usage(field: str) -> None:
    plain = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}}]}
    thinking = {
        "choices": [{"index": 0, "message": {**plain["choices"][0]["message"], field: THOUGHT}}]
    }
    ctx = bare_context(body={"messages": [{"role": "user", "content": "Capital of France?"}]})
    without, with_reasoning = usage_of(ctx, plain), usage_of(ctx, thinking)
    assert with_reasoning.source == "tiktoken"
    assert with_reasoning.completion_tokens > without.completion_tokens + 100
