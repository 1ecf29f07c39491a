"""What a streamed answer carries besides content and tool calls survives its assembly into the
body that the cache stores, the Responses API reads and the ledger counts: reasoning, a legacy
`functions` call and annotations (they were dropped)."""

from __future__ import annotations

from typing import Any

from gateway.pipeline.stream import StreamAssembler

BASE = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {**BASE, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_reasoning_pieces_are_joined_per_field() -> None:
    a = StreamAssembler()
    a.add(chunk({"role": "assistant", "reasoning_content": "Let me "}))
    a.add(chunk({"reasoning_content": "think."}))
    a.add(chunk({"reasoning": "r"}))
    a.add(chunk({"content": "42"}, "stop"))
    message = a.result(chat=True)["choices"][0]["message"]
    assert message["content"] == "42"
    assert message["reasoning_content"] == "Let me think."
    assert message["reasoning"] == "r"


def test_a_legacy_function_call_is_rebuilt_from_its_pieces() -> None:
    a = StreamAssembler()
    a.add(chunk({"role": "assistant", "function_call": {"name": "get_", "arguments": ""}}))
    a.add(chunk({"function_call": {"name": "weather", "arguments": '{"city": '}}))
    a.add(chunk({"function_call": {"arguments": '"Paris"}'}}, "function_call"))
    choice = a.result(chat=True)["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert choice["message"]["function_call"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }


def test_annotations_are_kept() -> None:
    cite = {"type": "url_citation", "url_citation": {"url": "https://example.org", "title": "x"}}
    a = StreamAssembler()
    a.add(chunk({"role": "assistant", "content": "See the source."}))
    a.add(chunk({"annotations": [cite]}, "stop"))
    assert a.result(chat=True)["choices"][0]["message"]["annotations"] == [cite]


def test_a_plain_answer_gains_no_empty_fields() -> None:
    a = StreamAssembler()
    a.add(chunk({"role": "assistant", "content": "Hi"}, "stop"))
    message = a.result(chat=True)["choices"][0]["message"]
    assert not {"reasoning_content", "reasoning", "function_call", "annotations"} & set(message)
