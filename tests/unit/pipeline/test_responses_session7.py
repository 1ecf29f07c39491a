"""Responses translation fixes of hardening round 6: tool choices, custom tools, stream parts."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import InvalidRequest
from gateway.pipeline.responses_request import chat_body_from_responses

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
