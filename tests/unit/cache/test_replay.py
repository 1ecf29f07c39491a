"""A cached answer replayed as SSE chunks reassembles to the same answer."""

from __future__ import annotations

import pytest

from gateway.cache.replay import chunks_of, fresh_body, split_text
from gateway.pipeline.stream import StreamAssembler

BODY = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "word " * 60},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 60, "total_tokens": 65},
}  # fmt: skip


@pytest.mark.parametrize("text", ["", "a", "x" * 500, "one two three " * 40, " lead and trail "])
def test_split_text_joins_back(text: str) -> None:
    pieces = split_text(text, 16)
    assert "".join(pieces) == text
    assert all(pieces)


@pytest.mark.parametrize("usage", [True, False])
def test_chat_replay_reassembles(usage: bool) -> None:
    chunks = chunks_of(BODY, include_usage=usage)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len(chunks) > 3
    asm = StreamAssembler()
    for c in chunks:
        asm.add(c)
    out = asm.result(chat=True)
    assert out["choices"][0]["message"]["content"] == BODY["choices"][0]["message"]["content"]
    assert out["choices"][0]["finish_reason"] == "stop"
    assert ("usage" in out) is usage
    assert (chunks[-1]["choices"] == []) is usage


def test_completion_replay_reassembles() -> None:
    choice = {"index": 0, "text": "hello world " * 20, "finish_reason": "length"}
    body = {"id": "c", "object": "text_completion", "created": 1, "model": "m", "choices": [choice]}
    asm = StreamAssembler()
    for c in chunks_of(body, include_usage=False):
        asm.add(c)
    out = asm.result(chat=False)
    assert out["choices"][0]["text"] == body["choices"][0]["text"]
    assert out["choices"][0]["finish_reason"] == "length"


def test_fresh_body_gets_a_new_id() -> None:
    import orjson

    body = fresh_body(orjson.dumps(BODY), "req_1")
    assert body["id"] == "chatcmpl-cache-req_1" and body["created"] >= 1
    assert body["choices"] == BODY["choices"]


def _reassembled_deltas(body: dict[str, object]) -> dict[str, list[object]]:
    """Every delta field the replay sent, in order (what an SDK's stream consumer sees)."""
    seen: dict[str, list[object]] = {}
    for c in chunks_of(body, include_usage=False):
        for choice in c["choices"]:
            for k, v in choice["delta"].items():
                seen.setdefault(k, []).append(v)
    return seen


def test_a_replayed_function_call_keeps_its_call() -> None:
    fc = {"name": "lookup", "arguments": '{"q": "Paris"}'}
    msg = {"role": "assistant", "content": None, "function_call": fc}
    body = {**BODY, "choices": [{"index": 0, "message": msg, "finish_reason": "function_call"}]}
    assert _reassembled_deltas(body)["function_call"] == [fc]


def test_a_replay_keeps_reasoning_and_annotations() -> None:
    cite = {"type": "url_citation", "url_citation": {"url": "https://example.com", "title": "t"}}
    msg = {
        "role": "assistant",
        "content": "The answer.",
        "reasoning_content": "Let me think.",
        "annotations": [cite],
    }
    body = {**BODY, "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}]}
    seen = _reassembled_deltas(body)
    assert seen["reasoning_content"] == ["Let me think."]
    assert seen["annotations"] == [[cite]]
    assert "".join(str(x) for x in seen["content"]) == "The answer."
    # the reasoning streams before the answer, as a reasoning model sends it
    deltas = [c["choices"][0]["delta"] for c in chunks_of(body, include_usage=False)]
    first_words = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert "reasoning_content" in deltas[first_words - 1]
