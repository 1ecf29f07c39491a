"""Which upstream 400s say that the prompt does not fit the model's context, in the words of the
servers that have no `context_length_exceeded` code (the group then tries a larger deployment),
and which do not."""

from __future__ import annotations

import pytest

from gateway.providers.upstream_errors import context_too_long


@pytest.mark.parametrize(
    "message",
    [
        # vLLM
        "This model's maximum context length is 4096 tokens. However, you requested 5210 tokens "
        "(4186 in the messages, 1024 in the completion). Please reduce the length of the messages "
        "or completion.",
        # llama.cpp
        "the request exceeds the available context size, try increasing it",
        # TGI
        "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4186 "
        "`inputs` tokens and 1024 `max_new_tokens`",
        "Input validation error: `inputs` must have less than 4096 tokens. Given: 5000",
        # LM Studio
        "Trying to keep the first 5210 tokens when context the overflows. However, the model is "
        "loaded with context length of only 4096 tokens, which is not enough.",
        # SGLang
        "The input (5210 tokens) is longer than the model's context length (4096 tokens).",
        # Ollama
        "the input length exceeds the context length",
        # Mistral, Fireworks
        "Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 maximum "
        "context length",
        "The prompt is too long: 5210, model maximum context length: 4096",
    ],
)
def test_context_refusals_in_words_are_recognised(message: str) -> None:
    assert context_too_long(message)


@pytest.mark.parametrize(
    "message",
    [
        "Invalid value for temperature: 3 is greater than the maximum of 2",
        "context_length must be an integer",
        "Unknown parameter: 'context_window'",
        "body.messages: Field required",
        "Failed to parse grammar",
        "max_tokens must be at least 1, got 0.",
    ],
)
def test_other_refusals_are_not(message: str) -> None:
    assert not context_too_long(message)
