"""OpenAI answer controls that litellm cannot take as they are, mended or refused before the call.

litellm raises on them before any provider sees the request, which reads as the deployment
failing (a 502 and a count against its breaker) for a request that is valid OpenAI:
- `tool_choice: {"type": "allowed_tools", ...}` ("Invalid tool choice"; the Responses API's
  translation sends it too) is sent as what it means: the listed tools alone, with the mode;
- a `response_format.json_schema` without its (optional) `schema` (a KeyError) and a
  `tool_choice` object of another type than OpenAI's function forms ("Invalid tool choice")
  are refused with `unsupported_parameter`, so the group's next deployment may serve them.
A forced tool call where litellm maps no `tool_choice` (Bedrock's Llama and Nova, Fireworks)
would be dropped on the way, the model free to answer prose: refused the same way.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from typing import Any

from gateway.errors import InvalidRequest
from gateway.routing.catalog import Deployment

Json = dict[str, Any]
# litellm's functions that map a request's OpenAI parameters to the provider's, before anything
# is sent: what raises there is about this request (a tool type the provider has no form for),
# never the deployment's health.
_MAPPING_FRAMES = frozenset(
    {"get_optional_params", "map_openai_params", "validate_chat_completion_tool_choice"}
)


def _tool_name(tool: Any) -> Any:
    if not isinstance(tool, dict):
        return None
    inner = tool.get(tool.get("type") or "function")
    return inner.get("name") if isinstance(inner, dict) else tool.get("name")


def with_allowed_tools_applied(body: Json) -> Json:
    """`body` with an `allowed_tools` choice as the allowed subset of `tools` and its mode
    ("auto" or "required"); `body` itself when it has none. The allowed list only narrows what
    the model may call, which a shorter `tools` says to every provider (OpenAI keeps the whole
    list for its prompt cache, which litellm's providers do not share)."""
    choice = body.get("tool_choice")
    if not isinstance(choice, dict) or choice.get("type") != "allowed_tools":
        return body
    allowed = choice.get("allowed_tools") or {}
    names = {_tool_name(t) for t in allowed.get("tools") or ()}
    tools = [t for t in body.get("tools") or () if _tool_name(t) in names]
    if not tools:  # nothing allowed may be called: an answer in text
        return {k: v for k, v in body.items() if k not in ("tools", "tool_choice")}
    return {**body, "tools": tools, "tool_choice": allowed.get("mode", "auto")}


def refuse_schemaless_json_schema(body: Json, dep: Deployment) -> None:
    fmt = body.get("response_format")
    spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
    if isinstance(spec, dict) and spec.get("schema") is None:
        raise InvalidRequest(
            f"Deployment {dep.name!r} ({dep.provider}) needs the JSON Schema itself in "
            "'response_format.json_schema.schema' (or 'response_format': {'type': "
            "'json_object'} for JSON of any shape).",
            param="response_format.json_schema.schema",
            code="unsupported_parameter",
        )


def refuse_unreadable_tool_choice(body: Json, dep: Deployment) -> None:
    """A 400 `unsupported_parameter` for a `tool_choice` object litellm cannot read: it takes
    OpenAI's function forms only, and raised "Invalid tool choice" on a custom tool's (GPT-5's
    custom tools) or Anthropic's own `{"type": "tool"}` sent to the OpenAI API."""
    choice = with_allowed_tools_applied(body).get("tool_choice")
    if not isinstance(choice, dict):
        return
    kind = choice.get("type")
    if kind in ("auto", "none", "required") or (kind and choice.get("function") is not None):
        return
    raise InvalidRequest(
        f"Deployment {dep.name!r} ({dep.provider}) cannot take 'tool_choice' of type {kind!r}: "
        "send 'auto', 'none', 'required' or {'type': 'function', 'function': {'name': ...}}.",
        param="tool_choice",
        code="unsupported_parameter",
    )


def refuse_unforceable_tool_choice(body: Json, dep: Deployment, supported: list[str]) -> None:
    """A 400 `unsupported_parameter` for a `tool_choice` that forces a call ("required", a
    named tool, allowed tools in "required" mode) where litellm maps none for the provider:
    dropped, the model chose for itself, and an agent that forced a call got prose with a 200.
    ("none" and "auto" ask for no call, the model's own choice; they pass.)"""
    if "tool_choice" in supported or not body.get("tools"):
        return
    choice = with_allowed_tools_applied(body).get("tool_choice")
    if choice not in (None, "auto", "none"):
        raise InvalidRequest(
            f"Deployment {dep.name!r} ({dep.provider}) cannot force a tool call "
            "('tool_choice'): its provider lets the model choose; send 'auto' or use a model "
            "that supports tool_choice.",
            param="tool_choice",
            code="unsupported_parameter",
        )


def failed_mapping_the_request(chain: Iterable[BaseException]) -> bool:
    """Whether litellm raised while mapping the request's parameters for the provider (a
    custom tool to Anthropic: KeyError 'function'; "Unsupported tool type: code_interpreter"):
    a 502 counted against the deployment's breaker, where the group's next deployment may
    serve the request."""
    return any(
        frame.name in _MAPPING_FRAMES
        for exc in chain
        for frame in traceback.extract_tb(exc.__traceback__)
    )
