"""litellm's translated stream chunks, put back into the shape OpenAI sends."""

from gateway.providers.litellm_adapter import openai_shaped

BASE = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "claude"}
USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def test_the_usage_chunk_loses_its_empty_choice() -> None:
    chunk = {**BASE, "choices": [{"index": 0, "delta": {}}], "usage": USAGE}
    assert openai_shaped(chunk) == [{**BASE, "choices": [], "usage": USAGE}]


def test_usage_on_the_finish_chunk_is_split_off_after_it() -> None:
    finish = {"index": 0, "delta": {}, "finish_reason": "stop"}
    chunk = {**BASE, "choices": [finish], "usage": USAGE}
    assert openai_shaped(chunk) == [
        {**BASE, "choices": [finish]},
        {**BASE, "choices": [], "usage": USAGE},
    ]


def test_empty_chunks_are_dropped_and_the_rest_pass_unchanged() -> None:
    assert openai_shaped({**BASE, "choices": [{"index": 0, "delta": {"content": None}}]}) == []
    opening = {**BASE, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}
    text = {**BASE, "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
    assert openai_shaped(opening) == [opening]
    assert openai_shaped(text) == [text]
