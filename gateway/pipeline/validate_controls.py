"""Checks of the chat fields that shape the answer: `tools`, `tool_choice`,
`parallel_tool_calls` and `response_format`, as OpenAI checks them.

A malformed one must be the client's 400 here: litellm raises on it (a KeyError on
`response_format.json_schema.schema`, "Invalid tool choice") before any provider sees the
request, and that reads as the deployment failing, whose breaker then refused every tenant.
Other servers' own values pass to them: vLLM's `structural_tag` and Fireworks' `grammar`
formats, Together's `schema` beside `type`, tool and tool-choice types OpenAI does not list.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import invalid_value

TOOL_CHOICE_MODES = ("none", "auto", "required")
ALLOWED_TOOLS_MODES = ("auto", "required")


def check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise invalid_value("'tools' must be an array of objects.", "tools")
    for k, tool in enumerate(tools):
        if not isinstance(tool.get("type"), str):
            raise invalid_value(
                f"'tools[{k}].type' is required: 'function', or another tool type.",
                f"tools[{k}].type",
            )
        fn = tool.get("function")
        if tool["type"] == "function" and (
            not isinstance(fn, dict)
            or not isinstance(fn.get("name"), str)
            or not isinstance(fn.get("parameters", {}), dict)
        ):
            raise invalid_value(
                f"'tools[{k}].function' must be an object with a 'name' (and 'parameters', an "
                "object, if any).",
                f"tools[{k}].function",
            )


def check_tool_choice(choice: Any) -> None:
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in TOOL_CHOICE_MODES:
            raise invalid_value(
                "'tool_choice' must be 'none', 'auto', 'required' or an object naming a tool.",
                "tool_choice",
            )
        return
    if not isinstance(choice, dict):
        raise invalid_value("'tool_choice' must be a string or an object.", "tool_choice")
    kind = choice.get("type")
    if not isinstance(kind, str):
        raise invalid_value(
            "'tool_choice.type' is required: 'function', for one.", "tool_choice.type"
        )
    if kind in ("function", "custom"):
        named = choice.get(kind)
        if not isinstance(named, dict) or not isinstance(named.get("name"), str):
            raise invalid_value(
                f"'tool_choice.{kind}' must be an object with the tool's 'name'.",
                f"tool_choice.{kind}",
            )
    elif kind == "allowed_tools":
        allowed = choice.get("allowed_tools")
        where = "tool_choice.allowed_tools"
        if not isinstance(allowed, dict):
            raise invalid_value(f"'{where}' must be an object with a 'mode' and 'tools'.", where)
        if allowed.get("mode") not in ALLOWED_TOOLS_MODES:
            raise invalid_value(f"'{where}.mode' must be 'auto' or 'required'.", f"{where}.mode")
        tools = allowed.get("tools")
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            raise invalid_value(f"'{where}.tools' must be an array of tools.", f"{where}.tools")


def check_response_format(fmt: Any) -> None:
    if fmt is None:
        return
    if not (isinstance(fmt, dict) and isinstance(fmt.get("type"), str)):
        raise invalid_value("'response_format' must be an object with a 'type'.", "response_format")
    if fmt["type"] != "json_schema" or (
        "json_schema" not in fmt and isinstance(fmt.get("schema"), dict)
    ):
        return
    where = "response_format.json_schema"
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        raise invalid_value(f"'{where}' must be an object with a 'name' and a 'schema'.", where)
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise invalid_value(f"'{where}.name' must be a non-empty string.", f"{where}.name")
    if spec.get("schema") is not None and not isinstance(spec["schema"], dict):
        raise invalid_value(f"'{where}.schema' must be a JSON Schema object.", f"{where}.schema")
    if spec.get("strict") is not None and not isinstance(spec["strict"], bool):
        raise invalid_value(f"'{where}.strict' must be a boolean.", f"{where}.strict")


def check_answer_controls(body: dict[str, Any]) -> None:
    check_tools(body.get("tools"))
    check_tool_choice(body.get("tool_choice"))
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise invalid_value("'parallel_tool_calls' must be a boolean.", "parallel_tool_calls")
    check_response_format(body.get("response_format"))
