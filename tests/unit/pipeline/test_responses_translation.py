"""The Responses API translation: request -> chat body, chat reply -> response, chunks -> events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.errors import InvalidRequest
from gateway.pipeline.responses_reply import (
    echo_fields,
    finish_status,
    response_from_chat,
    usage_from_chat,
)
from gateway.pipeline.responses_request import chat_body_from_responses, messages_from_input
from gateway.pipeline.responses_stream import ResponsesStream, response_events

TOOL = {"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}}


def translate(**fields: Any) -> dict[str, Any]:
    return chat_body_from_responses({"model": "m", "input": "hi", **fields})


# -- request ---------------------------------------------------------------------------------


def test_string_input_instructions_and_renamed_fields():
    body = translate(
        instructions="Be brief.",
        max_output_tokens=20,
        temperature=0.5,
        top_p=0.5,
        user="u",
        seed=3,
        metadata={"k": "v"},
        store=True,
        truncation="disabled",
        include=["reasoning.encrypted_content"],
    )
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    assert body["max_tokens"] == 20 and "max_output_tokens" not in body
    assert (body["temperature"], body["top_p"], body["seed"], body["user"]) == (0.5, 0.5, 3, "u")
    assert body["metadata"] == {"k": "v"}
    for dropped in ("input", "instructions", "store", "truncation", "include"):
        assert dropped not in body


def test_unknown_top_level_fields_pass_through_like_chat():
    assert translate(top_k=5)["top_k"] == 5


def test_input_items_become_messages_in_order():
    messages = messages_from_input(
        [
            {"role": "system", "content": "s"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "q"}]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_image",
                        "image_url": "data:image/png;base64,AA",
                        "detail": "low",
                    }
                ],
            },
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_1",
                "status": "completed",
                "content": [{"type": "output_text", "text": "a", "annotations": []}],
            },
            {"type": "reasoning", "id": "rs_1", "summary": []},
        ]
    )
    assert messages == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": [{"type": "text", "text": "q"}]},
        {
            "role": "user",
            "content": [
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,AA", "detail": "low"},
                }
            ],
        },
        {"role": "assistant", "content": "a"},
    ]


def test_file_parts_become_chat_file_parts():
    (message,) = messages_from_input(
        [
            {
                "role": "user",
                "content": [
                    {"type": "input_file", "filename": "a.pdf", "file_data": "data:x"},
                    {"type": "input_text", "text": "summarise"},
                ],
            }
        ]
    )
    assert message["content"][0] == {
        "type": "file",
        "file": {"file_data": "data:x", "filename": "a.pdf"},
    }


def test_function_calls_join_the_assistant_turn_and_outputs_become_tool_messages():
    messages = messages_from_input(
        [
            {"role": "user", "content": "q"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "x"}],
            },
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}", "id": "fc"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [
                    {"type": "input_text", "text": "t"},
                    {"type": "input_text", "text": "wo"},
                ],
            },
        ]
    )
    assert messages[1] == {
        "role": "assistant",
        "content": "x",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
        ],
    }
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
    ]
    # a call with no assistant text before it opens its own assistant message
    alone = messages_from_input(
        [
            {"role": "user", "content": "q"},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        ]
    )
    assert alone[1]["content"] is None and alone[1]["tool_calls"][0]["id"] == "c"


def test_tools_tool_choice_and_text_format():
    body = translate(
        tools=[{**TOOL, "strict": True}],
        tool_choice={"type": "function", "name": "f"},
        parallel_tool_calls=False,
        text={"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}}},
    )
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "f",
                "description": "d",
                "parameters": {"type": "object"},
                "strict": True,
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert body["parallel_tool_calls"] is False
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "n", "schema": {"type": "object"}},
    }
    assert translate(text={"format": {"type": "json_object"}})["response_format"] == {
        "type": "json_object"
    }
    assert translate(tools=[TOOL], tool_choice="required")["tool_choice"] == "required"
    # without tools, neither is sent (OpenAI's chat API rejects them then)
    bare = translate(parallel_tool_calls=True, tool_choice="auto")
    assert "parallel_tool_calls" not in bare and "tool_choice" not in bare


def test_logprobs_are_asked_of_chat():
    asked = translate(include=["message.output_text.logprobs"], top_logprobs=3)
    assert asked["logprobs"] is True and asked["top_logprobs"] == 3
    assert translate(include=["message.output_text.logprobs"])["logprobs"] is True
    assert translate(top_logprobs=2)["logprobs"] is True  # a count implies the ask
    plain = translate(include=["reasoning.encrypted_content"], top_logprobs=0)
    assert "logprobs" not in plain and "top_logprobs" not in plain


def test_stream_asks_for_usage_and_reasoning_effort_maps():
    body = translate(stream=True, stream_options={"include_obfuscation": False})
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert translate(reasoning={"effort": "low"})["reasoning_effort"] == "low"


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"previous_response_id": 5}, "previous_response_id", "invalid_value"),
        ({"conversation": {"id": "c"}}, "conversation", "unsupported_parameter"),
        ({"background": True}, "background", "unsupported_parameter"),
        ({"prompt": {"id": "p"}}, "prompt", "unsupported_parameter"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type", "unsupported_parameter"),
        ({"tools": [{"type": "function"}]}, "tools[0].name", "invalid_value"),
        ({"tools": "f"}, "tools", "invalid_value"),
        ({"tool_choice": "sometimes"}, "tool_choice", "unsupported_parameter"),
        ({"include": "message.output_text.logprobs"}, "include", "invalid_value"),
        ({"top_logprobs": 21}, "top_logprobs", "invalid_value"),
        ({"top_logprobs": "2"}, "top_logprobs", "invalid_value"),
        (
            {"text": {"format": {"type": "json_schema", "name": "n"}}},
            "text.format.schema",
            "invalid_value",
        ),
        ({"text": "json"}, "text", "invalid_value"),
        ({"max_output_tokens": True}, "max_output_tokens", "invalid_value"),
        ({"input": []}, "input", "invalid_value"),
        ({"input": None}, "input", "missing_required_parameter"),
        ({"input": [{"role": "user", "content": 5}]}, "input[0].content", "invalid_value"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "input[0].content[0].type",
            "unsupported_parameter",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].image_url",
            "unsupported_parameter",
        ),
        (
            {"input": [{"type": "function_call", "call_id": "c", "name": "f"}]},
            "input[0].arguments",
            "invalid_value",
        ),
        (
            {"input": [{"type": "function_call_output", "call_id": "c", "output": 3}]},
            "input[0].output",
            "invalid_value",
        ),
        ({"input": [{"type": "computer_call_output"}]}, "input[0].type", "unsupported_parameter"),
        ({"store": "yes"}, "store", "invalid_value"),
        ({"metadata": []}, "metadata", "invalid_value"),
        ({"stream": "yes"}, "stream", "invalid_value"),
    ],
)
def test_unsupported_and_invalid_requests_name_the_parameter(fields, param, code):
    with pytest.raises(InvalidRequest) as exc:
        translate(**fields)
    assert (exc.value.param, exc.value.code) == (param, code)
    assert exc.value.status_code == 400 and exc.value.message


@pytest.mark.parametrize("raw", [None, [], "x", 3, {"input": "hi"}, {"model": 3, "input": "x"}])
def test_garbage_bodies_are_400s(raw):
    with pytest.raises(InvalidRequest):
        chat_body_from_responses(raw)


# -- reply -----------------------------------------------------------------------------------


def chat(message: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "upstream-name",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 4,
            "prompt_tokens_details": {"cached_tokens": 6},
            "completion_tokens_details": {"reasoning_tokens": 1},
        },
    }


def render(body: dict[str, Any], raw: dict[str, Any] | None = None) -> dict[str, Any]:
    return response_from_chat(
        body,
        response_id="resp_abc",
        created_at=1,
        model="gpt-4o-mini",
        echo=echo_fields(raw or {}),
        usage=usage_from_chat(body.get("usage")),
    )


def test_text_reply_becomes_a_completed_message_item_with_usage():
    out = render(chat({"role": "assistant", "content": "hello"}))
    assert out["object"] == "response" and out["status"] == "completed"
    assert out["model"] == "gpt-4o-mini" and out["incomplete_details"] is None
    assert out["output"] == [
        {
            "id": "msg_abc",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [
                {"type": "output_text", "text": "hello", "annotations": [], "logprobs": []}
            ],
        }
    ]
    assert out["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 6, "cache_write_tokens": 0},
        "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 1},
        "total_tokens": 14,
    }


def test_tool_calls_become_function_call_items():
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    out = render(chat({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"))
    assert out["output"] == [
        {
            "id": "fc_abc_0",
            "type": "function_call",
            "call_id": "call_1",
            "name": "f",
            "arguments": "{}",
            "status": "completed",
        }
    ]


def test_length_is_incomplete_and_request_fields_are_echoed():
    raw = {
        "instructions": "i",
        "max_output_tokens": 3,
        "tools": [TOOL],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "text": {"format": {"type": "json_object"}},
        "metadata": {"a": "b"},
        "store": True,
    }
    out = render(chat({"role": "assistant", "content": "cut"}, "length"), raw)
    assert out["status"] == "incomplete"
    assert out["incomplete_details"] == {"reason": "max_output_tokens"}
    assert out["output"][0]["status"] == "incomplete"
    assert out["instructions"] == "i" and out["max_output_tokens"] == 3
    assert out["tools"] == [TOOL] and out["tool_choice"] == "required"
    assert out["parallel_tool_calls"] is False and out["text"]["format"]["type"] == "json_object"
    assert out["metadata"] == {"a": "b"} and out["store"] is True and out["error"] is None
    assert finish_status("content_filter") == ("incomplete", {"reason": "content_filter"})
    assert finish_status(None) == ("completed", None)


def test_usage_missing_or_broken():
    assert usage_from_chat(None) is None
    assert usage_from_chat({"prompt_tokens": "x", "completion_tokens": -1})["total_tokens"] == 0


# -- stream ----------------------------------------------------------------------------------


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "c", "object": "chat.completion.chunk", "choices": choices, **extra}


async def _iter(items: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        yield item


def run(chunks: list[dict[str, Any]], **kwargs: Any) -> list[dict[str, Any]]:
    translator = ResponsesStream("resp_abc", 1, "m", echo_fields({}), **kwargs)

    async def collect() -> list[dict[str, Any]]:
        return [e async for e in response_events(_iter(chunks), translator)]

    return asyncio.run(collect())


def test_text_stream_events_in_order_with_usage():
    events = run(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({}, "stop"),
            chunk(usage={"prompt_tokens": 3, "completion_tokens": 2}),
        ]
    )
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[6]["text"] == "Hello"
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["output"][0]["content"][0]["text"] == "Hello"
    assert final["usage"]["input_tokens"] == 3 and final["usage"]["output_tokens"] == 2


def test_text_then_tool_calls_get_their_own_output_indexes():
    events = run(
        [
            chunk({"content": "Let me look."}),
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
            chunk(
                {
                    "tool_calls": [
                        {"index": 1, "id": "c2", "function": {"name": "g", "arguments": "{}"}}
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            chunk({}, "tool_calls"),
        ]
    )
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["type"]) for e in added] == [
        (0, "message"),
        (1, "function_call"),
        (2, "function_call"),
    ]
    # call 0 closed when call 1 opened; an upstream interleaving the two (its late "1}")
    # gets the whole arguments into the final object only
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(e["output_index"], e["name"], e["arguments"]) for e in done] == [
        (1, "f", '{"a":'),
        (2, "g", "{}"),
    ]
    # the text item closes before the first call opens
    kinds = [e["type"] for e in events]
    assert kinds.index("response.output_text.done") < kinds.index(
        "response.function_call_arguments.delta"
    )
    final = events[-1]["response"]
    assert [i["type"] for i in final["output"]] == ["message", "function_call", "function_call"]
    assert final["output"][1]["call_id"] == "c1" and final["usage"] is None
    assert final["output"][1]["arguments"] == '{"a":1}'


def test_text_after_a_call_is_another_message_item_with_its_own_id():
    events = run(
        [
            chunk({"content": "Let me look."}),
            chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f"}}]}),
            chunk({"content": "Done."}),
            chunk({}, "tool_calls"),
        ]
    )
    added = [e["item"]["id"] for e in events if e["type"] == "response.output_item.added"]
    assert added == ["msg_abc", "fc_abc_0", "msg_abc_2"]
    deltas = [(e["item_id"], e["delta"]) for e in events if e["type"].endswith("text.delta")]
    assert deltas == [("msg_abc", "Let me look."), ("msg_abc_2", "Done.")]
    final = events[-1]["response"]["output"]
    assert [i["id"] for i in final] == added and final[2]["content"][0]["text"] == "Done."


def test_parallel_calls_stream_one_item_at_a_time():
    # OpenAI's order: each item's `.done` events before the next `output_item.added`
    def call(index: int, **fields: Any) -> dict[str, Any]:
        return chunk({"tool_calls": [{"index": index, **fields}]})

    events = run(
        [
            call(0, id="c1", function={"name": "f", "arguments": ""}),
            call(0, function={"arguments": '{"a":1}'}),
            call(1, id="c2", function={"name": "g", "arguments": ""}),
            call(1, function={"arguments": '{"b":2}'}),
            chunk({}, "tool_calls"),
        ]
    )
    assert [(e["type"].removeprefix("response."), e.get("output_index")) for e in events] == [
        ("created", None),
        ("in_progress", None),
        ("output_item.added", 0),
        ("function_call_arguments.delta", 0),
        ("function_call_arguments.done", 0),
        ("output_item.done", 0),
        ("output_item.added", 1),
        ("function_call_arguments.delta", 1),
        ("function_call_arguments.done", 1),
        ("output_item.done", 1),
        ("completed", None),
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [(i["id"], i["call_id"], i["arguments"]) for i in done] == [
        ("fc_abc_0", "c1", '{"a":1}'),
        ("fc_abc_1", "c2", '{"b":2}'),
    ]
    assert events[-1]["response"]["output"] == done


def test_length_ends_with_response_incomplete_and_fallback_usage():
    usage = {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}
    events = run([chunk({"content": "cut"}, "length")], fallback_usage=lambda: usage)
    assert events[-1]["type"] == "response.incomplete"
    final = events[-1]["response"]
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["usage"] == usage


def test_in_band_error_ends_with_error_and_response_failed():
    err = {"error": {"message": "upstream broke", "type": "server_error", "code": "upstream_error"}}
    events = run([chunk({"content": "par"}), err, chunk({"content": "never"})])
    kinds = [e["type"] for e in events]
    assert kinds[-2:] == ["error", "response.failed"]
    assert "response.output_text.done" in kinds  # the partial text item is closed
    assert events[-2]["code"] == "upstream_error" and events[-2]["message"] == "upstream broke"
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "upstream broke"}
    assert failed["output"][0]["status"] == "incomplete"


def test_empty_stream_still_has_one_message_item():
    events = run([chunk({}, "stop")])
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["output"][0]["type"] == "message"


def test_closing_the_event_stream_closes_the_chunk_stream():
    closed: list[bool] = []

    async def chunks() -> AsyncIterator[dict[str, Any]]:
        try:
            while True:
                yield chunk({"content": "x"})
        finally:
            closed.append(True)

    async def go() -> None:
        events = response_events(chunks(), ResponsesStream("resp_a", 1, "m", echo_fields({})))
        async for event in events:
            if event["type"] == "response.output_text.delta":
                break
        await events.aclose()

    asyncio.run(go())
    assert closed == [True]
