"""Responses translation fixes of hardening round 6: tool choices, custom tools, stream parts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.errors import InvalidRequest
from gateway.pipeline.responses_reply import echo_fields, response_from_chat
from gateway.pipeline.responses_request import chat_body_from_responses
from gateway.pipeline.responses_stream import ResponsesStream, response_events

TOOL = {"type": "function", "name": "f", "parameters": {"type": "object"}}


def translate(**fields: Any) -> dict[str, Any]:
    return chat_body_from_responses({"model": "m", "input": "hi", **fields})


# -- tool_choice and tools (finding 3) -------------------------------------------------------


def test_allowed_tools_choice_becomes_chats_nested_form():
    body = translate(
        tools=[TOOL],
        tool_choice={"type": "allowed_tools", "mode": "required", "tools": [TOOL | {}]},
    )
    assert body["tool_choice"] == {
        "type": "allowed_tools",
        "allowed_tools": {
            "mode": "required",
            "tools": [{"type": "function", "function": {"name": "f"}}],
        },
    }


@pytest.mark.parametrize(
    ("choice", "param"),
    [
        ({"type": "allowed_tools", "mode": "sometimes", "tools": []}, "tool_choice.mode"),
        ({"type": "allowed_tools", "mode": "auto", "tools": "f"}, "tool_choice.tools"),
        ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "web_search"}]},
         "tool_choice.tools[0]"),
    ],
)  # fmt: skip
def test_malformed_allowed_tools_name_the_field(choice, param):
    with pytest.raises(InvalidRequest) as err:
        translate(tools=[TOOL], tool_choice=choice)
    assert err.value.param == param


def test_custom_tools_are_refused_with_a_message_that_says_why():
    with pytest.raises(InvalidRequest) as err:
        translate(tools=[TOOL, {"type": "custom", "name": "grammar_tool"}])
    assert err.value.param == "tools[1].type"
    message = err.value.message
    assert "custom" in message and "OpenAI's side" not in message and "function" in message
    with pytest.raises(InvalidRequest) as err:
        translate(tools=[TOOL], tool_choice={"type": "custom", "name": "grammar_tool"})
    assert err.value.param == "tool_choice" and "OpenAI's side" not in err.value.message


# -- stream events match the final object (finding 4) ---------------------------------------


async def _iter(items: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        yield item


def run(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    translator = ResponsesStream("resp_abc", 1, "m", echo_fields({}))

    async def collect() -> list[dict[str, Any]]:
        return [e async for e in response_events(_iter(chunks), translator)]

    return asyncio.run(collect())


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def parts_announced(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["part"] for e in events if e["type"] == "response.content_part.done"]


def test_a_streamed_refusal_is_a_refusal_part_with_its_events():
    events = run(
        [
            chunk({"role": "assistant", "refusal": ""}),
            chunk({"refusal": "I can't "}),
            chunk({"refusal": "help."}),
            chunk({}, "stop"),
        ]
    )
    kinds = [e["type"] for e in events]
    assert "response.refusal.delta" in kinds and "response.refusal.done" in kinds
    deltas = [e["delta"] for e in events if e["type"] == "response.refusal.delta"]
    assert "".join(deltas) == "I can't help."
    done = next(e for e in events if e["type"] == "response.refusal.done")
    assert done["refusal"] == "I can't help." and done["item_id"] == "msg_abc"
    final = events[-1]["response"]
    refusal = {"type": "refusal", "refusal": "I can't help."}
    assert final["output"][0]["content"] == [refusal]
    assert parts_announced(events) == [refusal]
    # the same answer as a JSON reply: the same item content
    reply = response_from_chat(
        {"choices": [{"message": {"role": "assistant", "content": None,
                                  "refusal": "I can't help."}, "finish_reason": "stop"}]},
        response_id="resp_abc", created_at=1, model="m", echo={}, usage=None,
    )  # fmt: skip
    assert reply["output"][0]["content"] == final["output"][0]["content"]


def test_an_empty_answer_announces_the_part_the_final_object_holds():
    events = run([chunk({"role": "assistant", "content": ""}), chunk({}, "stop")])
    final = events[-1]["response"]
    content = final["output"][0]["content"]
    assert parts_announced(events) == content
    added = [e for e in events if e["type"] == "response.content_part.added"]
    assert len(added) == len(content) == 1
    item_done = next(e for e in events if e["type"] == "response.output_item.done")
    assert item_done["item"] == final["output"][0]
    seqs = [e["sequence_number"] for e in events]
    assert seqs == list(range(len(events)))
