"""A Responses API request (`POST /v1/responses`) translated into a chat completions body.

The gateway serves the Responses API as a translation onto the chat pipeline, so auth, limits,
cache, compression, routing, fallback and the ledger apply unchanged. What needs state the
gateway does not keep (`conversation`, stored `prompt`s, `background` runs) or a hosted tool
(web search, file search, ...) is refused with a 400 that names the parameter.
`item_reference` inputs name output items of earlier replies, and `previous_response_id` a
stored response, which the gateway keeps per tenant (`responses_items.py`): the first
translation leaves a placeholder for each reference and lists the ids; the Responses stage looks
them up (and the previous response's conversation) and translates again with them. Fields this
module does not know are passed through to the chat body untouched, as the chat endpoint does.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from typing import Any

from gateway.errors import InvalidRequest, invalid_value
from gateway.pipeline.validate import (
    MAX_TOKENS_LIMIT,
    int_field,
    validate_chat,
    validate_common,
)

Json = dict[str, Any]

# Translated below, or accepted and dropped; never copied into the chat body as they are.
TRANSLATED = frozenset(
    {
        "input", "instructions", "max_output_tokens", "tools", "tool_choice", "text",
        "reasoning", "store", "include", "truncation", "max_tool_calls", "stream_options",
        "background", "parallel_tool_calls", "prompt_cache_options", "top_logprobs",
        "previous_response_id",
    }
)  # fmt: skip
# Need server-side state or OpenAI-hosted machinery the gateway does not have.
UNSERVED = {
    "conversation": "conversations are not stored; send the whole conversation in 'input'",
    "prompt": "stored prompt templates are not available; send the text in 'instructions'",
    "context_management": "server-side context management is not available",
    "moderation": "OpenAI-hosted moderation is not available",
}
ROLES = frozenset({"user", "system", "developer", "assistant"})
TOOL_CHOICES = frozenset({"auto", "none", "required"})
# Custom (free-form input) tools exist in chat too, but their calls, their outputs and their
# stream events would each need translating both ways; until then, a clear refusal.
CUSTOM_TOOLS = (
    "{where} 'custom' is not supported: custom (free-form input) tools are not translated "
    "onto chat completions by this gateway; use a 'function' tool with a JSON schema."
)
# The one `include` value that asks for more than the answer text and usage (translated onto
# chat's `logprobs`); the others name hosted-tool or reasoning details this gateway never
# produces, so they are accepted as no-ops.
LOGPROBS_INCLUDE = "message.output_text.logprobs"
MAX_TOP_LOGPROBS = 20


class ResponsesChatBody(dict[str, Any]):
    """The chat body of a Responses request, plus what the Responses stage needs from the
    request as sent (serialises as the plain dict it is)."""

    raw: Json  # the Responses body, to translate again once references are resolved
    references: list[str]  # ids of `item_reference` inputs still to resolve, in order
    store: bool  # keep this reply's output items for later references (`store`, default true)
    previous: str | None  # `previous_response_id`, whose conversation comes before `input`
    history: list[Json]  # that conversation (Responses items), once the stage has read it
    chain: list[str]  # the ids of the responses this one continues, oldest first
    referenced: Mapping[str, Json]  # the stored items the references resolved to
    created_at: int  # the response's `created_at` (the reply and its stored copy agree)


def unsupported(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="unsupported_parameter")


def unknown_reference(where: str, item_id: str) -> InvalidRequest:
    return InvalidRequest(
        f"'{where}' refers to item '{item_id}', which is unknown or expired: this gateway "
        "keeps the output items of its responses for a limited time, for the tenant that "
        "received them. Send the item itself instead of a reference, or send requests with "
        "'store': false so that clients send items in full (Vercel AI SDK: "
        "providerOptions.openai.store = false).",
        param=where,
        code="item_not_found",
    )


def previous_not_found(response_id: str) -> InvalidRequest:
    return InvalidRequest(
        f"Previous response with id '{response_id}' not found: this gateway keeps responses "
        "sent with 'store' true (the default) for a limited time, for the tenant that received "
        "them; send the whole conversation in 'input' instead.",
        param="previous_response_id",
        code="previous_response_not_found",
    )


def chat_body_from_responses(
    raw: Any, items: Mapping[str, Json] | None = None, history: list[Json] | None = None
) -> Json:
    """Validate a Responses request and return the equivalent chat completions body.

    Without `items`, each `item_reference` input becomes a placeholder and its id is listed in
    the result's `references`; with `items` (the stored items by id), references are replaced
    by the items they name, and one that is not there is a 400. `history` is the conversation
    of `previous_response_id` (its input and output items), sent before `input`.
    """
    if not isinstance(raw, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_body")
    validate_common(raw)
    _refuse_unserved(raw)
    body = ResponsesChatBody(
        {k: v for k, v in raw.items() if k not in TRANSLATED and k not in UNSERVED}
    )
    body.raw, body.references, body.store = raw, [], raw.get("store") is not False
    body.previous, body.history, body.referenced = _previous_id(raw), history or [], items or {}
    body.chain = []
    body.created_at = int(time.time())
    messages: list[Json] = []
    instructions = raw.get("instructions")  # this turn's only: not inherited from the previous
    if instructions is not None:
        if not isinstance(instructions, str):
            raise invalid_value("'instructions' must be a string.", "instructions")
        messages.append({"role": "system", "content": instructions})
    if body.history:
        messages.extend(messages_from_input(body.history, {}))
    seen = {item.get("id") for item in body.history}
    messages.extend(messages_from_input(raw.get("input"), items, body.references, seen))
    body["messages"] = messages
    int_field(raw, "max_output_tokens", 1, MAX_TOKENS_LIMIT)
    if raw.get("max_output_tokens") is not None:
        body["max_tokens"] = raw["max_output_tokens"]
    chat_tools = tools_from_responses(raw["tools"]) if raw.get("tools") is not None else []
    choice = raw.get("tool_choice")
    choice = tool_choice_from_responses(choice) if choice is not None else None
    if chat_tools:  # OpenAI's chat API rejects these two without tools; Responses does not
        body["tools"] = chat_tools
        if raw.get("parallel_tool_calls") is not None:
            body["parallel_tool_calls"] = raw["parallel_tool_calls"]
        if choice is not None:
            body["tool_choice"] = choice
    body.update(text_options(raw.get("text")))
    effort = reasoning_effort(raw.get("reasoning"))
    if effort is not None:
        body["reasoning_effort"] = effort
    top = raw.get("top_logprobs") or 0
    if LOGPROBS_INCLUDE in (raw.get("include") or ()) or top:
        # each output_text part (and stream delta) carries chat's per-token log probabilities
        body["logprobs"] = True
        if top:
            body["top_logprobs"] = top
    if raw.get("stream"):
        # Always ask for usage: the final `response.completed` event carries it.
        body["stream_options"] = {"include_usage": True}
    validate_chat(body)
    return body


def _previous_id(raw: Json) -> str | None:
    previous = raw.get("previous_response_id")
    if previous is None:
        return None
    if not isinstance(previous, str) or not previous:
        raise invalid_value(
            "'previous_response_id' must be a non-empty string.", "previous_response_id"
        )
    return previous


def _refuse_unserved(raw: Json) -> None:
    for name, why in UNSERVED.items():
        if raw.get(name) is not None:
            raise unsupported(f"'{name}' is not supported by this gateway: {why}.", name)
    if raw.get("background") not in (None, False):
        raise unsupported(
            "'background' is not supported by this gateway: responses are answered in the "
            "request and not stored; send the request without 'background'.",
            "background",
        )
    store = raw.get("store")
    if store is not None and not isinstance(store, bool):
        raise invalid_value("'store' must be a boolean.", "store")
    include = raw.get("include")
    if include is not None and (
        not isinstance(include, list) or not all(isinstance(x, str) for x in include)
    ):
        raise invalid_value("'include' must be an array of strings.", "include")
    int_field(raw, "top_logprobs", 0, MAX_TOP_LOGPROBS)
    truncation = raw.get("truncation")
    if truncation not in (None, "auto", "disabled"):
        raise invalid_value("'truncation' must be 'auto' or 'disabled'.", "truncation")
    ptc = raw.get("parallel_tool_calls")
    if ptc is not None and not isinstance(ptc, bool):
        raise invalid_value("'parallel_tool_calls' must be a boolean.", "parallel_tool_calls")
    metadata = raw.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid_value("'metadata' must be an object.", "metadata")


# -- input -------------------------------------------------------------------------------


def messages_from_input(
    inp: Any,
    items: Mapping[str, Json] | None = None,
    references: list[str] | None = None,
    seen: Collection[Any] = (),
) -> list[Json]:
    """`input` (a string or a list of items) as chat messages, in order.

    An `item_reference` is replaced by `items[id]`; without `items` its id is appended to
    `references` and an empty assistant message holds its place until it is resolved. Items
    (or references) whose id is in `seen` (already in the previous response's conversation,
    as the Vercel AI SDK sends them with `previousResponseId`) are left out, not sent twice.
    """
    if isinstance(inp, str):
        return [{"role": "user", "content": inp}]
    if not isinstance(inp, list) or not inp:
        raise InvalidRequest(
            "'input' must be a string or a non-empty array of input items.",
            param="input",
            code="invalid_value" if inp is not None else "missing_required_parameter",
        )
    messages: list[Json] = []
    for i, item in enumerate(inp):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise invalid_value(f"'{where}' must be an object.", where)
        kind = item.get("type", "message" if "role" in item else None)
        if item.get("id") is not None and item.get("id") in seen:
            continue
        if kind == "item_reference":
            ref = _reference_id(item, where)
            if items is None:
                if references is not None:
                    references.append(ref)
                messages.append({"role": "assistant", "content": ""})
                continue
            stored = items.get(ref)
            if stored is None:
                raise unknown_reference(where, ref)
            item, kind = stored, stored.get("type")
        if kind == "message":
            messages.append(_message(item, where))
        elif kind == "function_call":
            _add_tool_call(messages, item, where)
        elif kind == "function_call_output":
            messages.append(_tool_result(item, where))
        elif kind == "reasoning":
            continue  # a reasoning model's own notes from an earlier turn: chat cannot take them
        else:
            raise unsupported(
                f"'{where}.type' {kind!r} is not supported; use messages, 'function_call' "
                "and 'function_call_output' items.",
                f"{where}.type",
            )
    return messages


def _reference_id(item: Json, where: str) -> str:
    ref = item.get("id")
    if not isinstance(ref, str) or not ref:
        raise invalid_value(f"'{where}.id' must be a non-empty string.", f"{where}.id")
    return ref


def _message(item: Json, where: str) -> Json:
    role = item.get("role")
    if role not in ROLES:
        raise invalid_value(f"'{where}.role' must be one of {sorted(ROLES)}.", f"{where}.role")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise invalid_value(
            f"'{where}.content' must be a string or an array of content parts.",
            f"{where}.content",
        )
    if role == "assistant":
        return {"role": "assistant", "content": _assistant_text(content, where)}
    parts = [_part(p, f"{where}.content[{j}]") for j, p in enumerate(content)]
    return {"role": role, "content": parts}


def _assistant_text(content: list[Any], where: str) -> str:
    texts: list[str] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise invalid_value(f"'{at}' must be an object.", at)
        kind = part.get("type")
        key = "refusal" if kind == "refusal" else "text"
        if kind not in ("output_text", "input_text", "refusal") or not isinstance(
            part.get(key), str
        ):
            raise invalid_value(
                f"'{at}' must be an 'output_text' or 'refusal' part with its text.", at
            )
        texts.append(part[key])
    return "".join(texts)


def _part(part: Any, at: str) -> Json:
    if not isinstance(part, dict):
        raise invalid_value(f"'{at}' must be an object.", at)
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        text = part.get("text")
        if not isinstance(text, str):
            raise invalid_value(f"'{at}.text' must be a string.", f"{at}.text")
        return {"type": "text", "text": text}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise unsupported(
                f"'{at}' needs an 'image_url' (an https or data: URL); uploaded 'file_id' "
                "images are not supported.",
                f"{at}.image_url",
            )
        image: Json = {"url": url}
        if part.get("detail") is not None:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        if part.get("file_url") is not None:
            raise unsupported(f"'{at}.file_url' is not supported; send 'file_data'.", at)
        file = {k: part[k] for k in ("file_data", "file_id", "filename") if part.get(k) is not None}
        if not file.get("file_data") and not file.get("file_id"):
            raise invalid_value(f"'{at}' needs 'file_data' or 'file_id'.", at)
        return {"type": "file", "file": file}
    raise unsupported(
        f"'{at}.type' {kind!r} is not supported; use 'input_text', 'input_image' or 'input_file'.",
        f"{at}.type",
    )


def _add_tool_call(messages: list[Json], item: Json, where: str) -> None:
    call_id, name, args = item.get("call_id"), item.get("name"), item.get("arguments")
    for field, value in (("call_id", call_id), ("name", name), ("arguments", args)):
        if not isinstance(value, str):
            raise invalid_value(f"'{where}.{field}' must be a string.", f"{where}.{field}")
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
    last = messages[-1] if messages else None
    # A turn's text and its calls (or several parallel calls) are one assistant message.
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
        return
    messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _tool_result(item: Json, where: str) -> Json:
    call_id, output = item.get("call_id"), item.get("output")
    if not isinstance(call_id, str):
        raise invalid_value(f"'{where}.call_id' must be a string.", f"{where}.call_id")
    if isinstance(output, list):
        texts = []
        for j, part in enumerate(output):
            if not isinstance(part, dict) or part.get("type") != "input_text":
                raise unsupported(
                    f"'{where}.output[{j}]': only 'input_text' parts are supported in a "
                    "function call's output.",
                    f"{where}.output",
                )
            texts.append(str(part.get("text") or ""))
        output = "".join(texts)
    if not isinstance(output, str):
        raise invalid_value(f"'{where}.output' must be a string.", f"{where}.output")
    return {"role": "tool", "tool_call_id": call_id, "content": output}


# -- tools and formats ---------------------------------------------------------------------


def tools_from_responses(tools: Any) -> list[Json]:
    """Flat `{"type":"function","name",...}` tools as chat's nested function tools."""
    if not isinstance(tools, list):
        raise invalid_value("'tools' must be an array of tools.", "tools")
    out: list[Json] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise invalid_value(f"'{where}' must be an object.", where)
        kind = tool.get("type")
        if kind == "custom":
            raise unsupported(CUSTOM_TOOLS.format(where=f"'{where}.type'"), f"{where}.type")
        if kind != "function":
            raise unsupported(
                f"'{where}.type' {kind!r} is not supported: built-in tools (web search, file "
                "search, code interpreter, ...) run on OpenAI's side; only 'function' tools "
                "are available through this gateway.",
                f"{where}.type",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise invalid_value(f"'{where}.name' must be a non-empty string.", f"{where}.name")
        fn: Json = {"name": name}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                fn[key] = tool[key]
        out.append({"type": "function", "function": fn})
    return out


def tool_choice_from_responses(choice: Any) -> Any:
    if isinstance(choice, str) and choice in TOOL_CHOICES:
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise invalid_value(
                "'tool_choice.name' must be a non-empty string.", "tool_choice.name"
            )
        return {"type": "function", "function": {"name": name}}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        return _allowed_tools(choice)
    if isinstance(choice, dict) and choice.get("type") == "custom":
        raise unsupported(CUSTOM_TOOLS.format(where="'tool_choice'"), "tool_choice")
    raise unsupported(
        "'tool_choice' must be 'auto', 'none', 'required', "
        '{"type": "function", "name": ...} or {"type": "allowed_tools", ...}.',
        "tool_choice",
    )


def _allowed_tools(choice: Json) -> Json:
    """`{"type": "allowed_tools", "mode", "tools": [{"type": "function", "name"}]}` in chat's
    nested form (`allowed_tools: {mode, tools: [{type, function: {name}}]}`)."""
    mode, tools = choice.get("mode"), choice.get("tools")
    if mode not in ("auto", "required"):
        raise invalid_value("'tool_choice.mode' must be 'auto' or 'required'.", "tool_choice.mode")
    if not isinstance(tools, list):
        raise invalid_value("'tool_choice.tools' must be an array of tools.", "tool_choice.tools")
    allowed: list[Json] = []
    for i, tool in enumerate(tools):
        at = f"tool_choice.tools[{i}]"
        name = tool.get("name") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not name:
            raise invalid_value(f"'{at}' must be a function tool with its 'name'.", at)
        allowed.append({"type": "function", "function": {"name": name}})
    return {"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": allowed}}


def text_options(text: Any) -> Json:
    """`text.format` as chat's `response_format`, and `text.verbosity` as `verbosity`."""
    if text is None:
        return {}
    if not isinstance(text, dict):
        raise invalid_value("'text' must be an object.", "text")
    out: Json = {}
    if text.get("verbosity") is not None:
        out["verbosity"] = text["verbosity"]
    fmt = text.get("format")
    if fmt is None:
        return out
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        out["response_format"] = {"type": "text"}
    elif kind == "json_object":
        out["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        assert isinstance(fmt, dict)
        name, schema = fmt.get("name"), fmt.get("schema")
        if not isinstance(name, str) or not name:
            raise invalid_value(
                "'text.format.name' must be a non-empty string.", "text.format.name"
            )
        if not isinstance(schema, dict):
            raise invalid_value("'text.format.schema' must be an object.", "text.format.schema")
        if fmt.get("strict") is not None and not isinstance(fmt["strict"], bool):
            raise invalid_value("'text.format.strict' must be a boolean.", "text.format.strict")
        spec: Json = {"name": name, "schema": schema}
        for key in ("description", "strict"):
            if fmt.get(key) is not None:
                spec[key] = fmt[key]
        out["response_format"] = {"type": "json_schema", "json_schema": spec}
    else:
        raise invalid_value(
            "'text.format.type' must be 'text', 'json_object' or 'json_schema'.",
            "text.format.type",
        )
    return out


def reasoning_effort(reasoning: Any) -> Any:
    if reasoning is None:
        return None
    if not isinstance(reasoning, dict):
        raise invalid_value("'reasoning' must be an object.", "reasoning")
    return reasoning.get("effort")


# What the chat pipeline's errors name, as the Responses API calls it.
_RESPONSES_PARAMS = {
    "messages": "input",
    "max_tokens": "max_output_tokens",
    "max_completion_tokens": "max_output_tokens",
    "response_format": "text.format",
}


def responses_param(param: str | None) -> str | None:
    return _RESPONSES_PARAMS.get(param, param) if param is not None else None
