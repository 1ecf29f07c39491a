"""The fields that shape the answer (tools, tool_choice, parallel_tool_calls, response_format)
are checked as OpenAI checks them: litellm raised on a malformed one (a KeyError on
`response_format.json_schema.schema`, "Invalid tool choice") and the gateway took that for the
provider failing, so one client's mistake opened the deployment's breaker for every tenant."""

from typing import Any

import pytest

from gateway.errors import InvalidRequest
from gateway.pipeline.validate import validate_chat

MSGS = [{"role": "user", "content": "weather in Paris, as JSON"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        (
            {"response_format": {"type": "json_schema", "json_schema": "x"}},
            "response_format.json_schema",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format.json_schema.name",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": ""}}},
            "response_format.json_schema.name",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "p", "schema": "x"},
                }
            },
            "response_format.json_schema.schema",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "p", "strict": "yes"},
                }
            },
            "response_format.json_schema.strict",
        ),
        ({"tools": [TOOL], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [TOOL], "tool_choice": {"type": "function"}}, "tool_choice.function"),
        (
            {"tools": [TOOL], "tool_choice": {"type": "function", "function": "get_weather"}},
            "tool_choice.function",
        ),
        (
            {"tools": [TOOL], "tool_choice": {"function": {"name": "get_weather"}}},
            "tool_choice.type",
        ),
        ({"tools": [TOOL], "tool_choice": {"type": "allowed_tools"}}, "tool_choice.allowed_tools"),
        (
            {
                "tools": [TOOL],
                "tool_choice": {
                    "type": "allowed_tools",
                    "allowed_tools": {"mode": "sometimes", "tools": []},
                },
            },
            "tool_choice.allowed_tools.mode",
        ),
        (
            {
                "tools": [TOOL],
                "tool_choice": {
                    "type": "allowed_tools",
                    "allowed_tools": {"mode": "auto", "tools": "x"},
                },
            },
            "tool_choice.allowed_tools.tools",
        ),
        ({"tools": [{"function": {"name": "f"}}]}, "tools[0].type"),
        ({"tools": [TOOL], "parallel_tool_calls": "no"}, "parallel_tool_calls"),
    ],
)
def test_malformed_answer_controls_are_a_400_naming_the_field(
    fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_chat({"model": "m", "messages": MSGS, **fields})
    assert caught.value.status_code == 400
    assert caught.value.param == param


@pytest.mark.parametrize(
    "fields",
    [
        {"response_format": {"type": "text"}},
        {"response_format": {"type": "json_object"}},
        # OpenAI's `schema` is optional; Together and Fireworks put it beside `type`
        {"response_format": {"type": "json_schema", "json_schema": {"name": "p"}}},
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "p", "schema": {}, "strict": True},
            }
        },
        {"response_format": {"type": "json_schema", "schema": {"type": "object"}}},
        {"response_format": {"type": "json_object", "schema": {"type": "object"}}},
        # other servers' own formats pass to them: vLLM's structural tags, Fireworks' grammars
        {"response_format": {"type": "structural_tag", "structures": [], "triggers": []}},
        {"response_format": {"type": "grammar", "grammar": 'root ::= "yes"'}},
        {"tools": [TOOL], "tool_choice": "required", "parallel_tool_calls": False},
        {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        {
            "tools": [TOOL],
            "tool_choice": {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "required",
                    "tools": [{"type": "function", "function": {"name": "get_weather"}}],
                },
            },
        },
        {
            "tools": [{"type": "custom", "custom": {"name": "grep"}}],
            "tool_choice": {"type": "custom", "custom": {"name": "grep"}},
        },
    ],
)
def test_well_formed_answer_controls_pass(fields: dict[str, Any]) -> None:
    body = {"model": "m", "messages": MSGS, **fields}
    assert validate_chat(dict(body)) == body
