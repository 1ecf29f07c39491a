"""Streams of OpenAI-compatible servers that stray from OpenAI's chunks: reasoning in the
`reasoning` field (Ollama, OpenRouter, newer vLLM) is output for the time to first token, and a
tool call's arguments sent as an object (TGI's Messages API) are assembled as JSON text instead
of failing the stream."""

from __future__ import annotations

import json
from typing import Any

from gateway.pipeline.stream import StreamAssembler, carries_output
from gateway.providers.openai_shape import Shaper

BASE = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {**BASE, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_reasoning_under_either_name_is_the_first_token() -> None:
    # a reasoning model thinks for seconds before its first content: that wait is not TTFT
    assert carries_output(chunk({"role": "assistant", "reasoning": "Let me think"}))
    assert carries_output(chunk({"role": "assistant", "reasoning_content": "Let me think"}))


def test_tool_call_arguments_sent_as_an_object_are_assembled_as_json_text() -> None:
    a = StreamAssembler()
    call = {
        "index": 0,
        "id": "0",
        "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
    }
    a.add(chunk({"role": "assistant", "tool_calls": [call]}))
    a.add(chunk({}, "tool_calls"))
    tool = a.result(chat=True)["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(tool["function"]["arguments"]) == {"city": "Paris"}


def test_the_shaper_leaves_openais_own_chunks_as_they_are() -> None:
    shaper = Shaper("served", chat=True)
    original = chunk({"content": "hi"}, "stop")
    assert shaper.chunk(json.loads(json.dumps(original))) == original


def test_the_shaper_names_other_servers_finish_reasons_as_openai_does() -> None:
    shaper = Shaper("served", chat=True)
    for theirs, ours in [
        ("eos_token", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("COMPLETE", "stop"),
        ("Length", "length"),
    ]:
        out = shaper.chunk(chunk({}, theirs))
        assert out["choices"][0]["finish_reason"] == ours
    body = {"choices": [{"index": 0, "message": {"content": "x"}, "finish_reason": "eos"}]}
    out = Shaper("served", chat=True).body(body)
    assert out["choices"][0]["finish_reason"] == "stop"
    assert (out["object"], out["model"]) == ("chat.completion", "served")


def calls_of(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    shaper, a = Shaper("served", chat=True), StreamAssembler()
    for c in chunks:
        a.add(shaper.chunk(c))
    return list(a.result(chat=True)["choices"][0]["message"]["tool_calls"])


def call(index: int | None, call_id: str, name: str | None, args: str) -> dict[str, Any]:
    out: dict[str, Any] = {"id": call_id, "function": {"name": name, "arguments": args}}
    if index is not None:
        out["index"] = index
    return out


def test_parallel_tool_calls_streamed_under_one_index_stay_apart() -> None:
    # SGLang: every call at index 0, each with its own id on each of its deltas
    sglang = [
        chunk({"tool_calls": [call(0, "0", "get_weather", "")]}),
        chunk({"tool_calls": [call(0, "0", None, '{"city": "Paris"}')]}),
        chunk({"tool_calls": [call(0, "1", "get_time", "")]}),
        chunk({"tool_calls": [call(0, "1", None, '{"tz": "CET"}')]}),
        chunk({}, "tool_calls"),
    ]
    # vLLM's parsers that do it: the new id on the call's first delta only
    vllm = [
        chunk({"tool_calls": [call(0, "call-a", "get_weather", "")]}),
        chunk({"tool_calls": [call(0, "", None, '{"city": "Paris"}')]}),
        chunk({"tool_calls": [call(0, "call-b", "get_time", "")]}),
        chunk({"tool_calls": [call(0, "", None, '{"tz": "CET"}')]}),
        chunk({}, "tool_calls"),
    ]
    # no index at all
    bare = [
        chunk({"tool_calls": [call(None, "a", "get_weather", '{"city": "Paris"}')]}),
        chunk({"tool_calls": [call(None, "b", "get_time", '{"tz": "CET"}')]}),
        chunk({}, "tool_calls"),
    ]
    for stream in (sglang, vllm, bare):
        calls = calls_of(stream)
        assert [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
            ("get_weather", '{"city": "Paris"}'),
            ("get_time", '{"tz": "CET"}'),
        ]


def test_openais_own_parallel_calls_keep_their_indices() -> None:
    stream = [
        chunk({"tool_calls": [call(0, "call-a", "get_weather", "")]}),
        chunk({"tool_calls": [call(1, "call-b", "get_time", "")]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Paris"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"tz": "CET"}'}}]}),
        chunk({}, "tool_calls"),
    ]
    shaper = Shaper("served", chat=True)
    indices = [
        c["index"]
        for s in stream
        for c in shaper.chunk(s)["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert indices == [0, 1, 0, 1]
    assert [c["function"]["arguments"] for c in calls_of(stream)] == [
        '{"city": "Paris"}',
        '{"tz": "CET"}',
    ]
