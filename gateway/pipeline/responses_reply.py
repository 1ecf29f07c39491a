"""A chat completion (or its usage) rendered as a Responses API `response` object.

Pure functions: the Responses route and the stream translator build every `response` object
they send from these, so the JSON reply and the stream's final event agree.
"""

from __future__ import annotations

from typing import Any

from gateway.pipeline.account import cache_hits, reasoning_outside

Json = dict[str, Any]

# finish_reason -> incomplete_details.reason; any other finish means the answer is complete.
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def echo_fields(raw: Json) -> Json:
    """The request fields a `response` object repeats back (with the API's defaults)."""
    text = as_object(raw.get("text"))
    return {
        "instructions": raw.get("instructions"),
        "max_output_tokens": raw.get("max_output_tokens"),
        "temperature": raw.get("temperature"),
        "top_p": raw.get("top_p"),
        "tools": raw.get("tools") or [],
        "tool_choice": raw.get("tool_choice") or "auto",
        "parallel_tool_calls": raw.get("parallel_tool_calls") is not False,
        "text": {**text, "format": text.get("format") or {"type": "text"}},
        "metadata": raw.get("metadata") or {},
        "reasoning": raw.get("reasoning"),
        "user": raw.get("user"),
        "truncation": raw.get("truncation") or "disabled",
        # `store` keeps the response and its output items (`responses_items.py`)
        "store": raw.get("store") is not False,
        "background": False,
        "previous_response_id": raw.get("previous_response_id"),
        "service_tier": raw.get("service_tier"),
    }


def response_shell(
    response_id: str, created_at: int, model: str, echo: Json, *, status: str = "in_progress"
) -> Json:
    """A `response` object with no output yet (the stream's `response.created`)."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": [],
        "usage": None,
        **echo,
    }


def usage_from_chat(usage: Any) -> Json | None:
    """Chat `usage` as Responses `usage` (input/output tokens, cached and reasoning details)."""
    if not isinstance(usage, dict):
        return None
    prompt = _int(usage.get("prompt_tokens"))
    completion = _int(usage.get("completion_tokens"))
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    cached = cache_hits(usage, prompt_details if isinstance(prompt_details, dict) else {})
    reasoning = (
        _int(completion_details.get("reasoning_tokens"))
        if isinstance(completion_details, dict)
        else 0
    )
    # as the ledger bills it: output includes reasoning (xAI counts it outside completion)
    completion += reasoning_outside(usage, prompt, completion, _int(usage.get("total_tokens")))
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


def usage_from_counts(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> Json:
    return (
        usage_from_chat(
            {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached_tokens},
            }
        )
        or {}
    )


def as_object(value: Any) -> Json:
    """`value` when it is a JSON object, else an empty one (for reading optional fields)."""
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def message_item(item_id: str, text: str, *, status: str = "completed") -> Json:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [output_text(text)] if status != "in_progress" else [],
    }


def output_text(text: str) -> Json:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def token_logprobs(logprobs: Any) -> list[Json]:
    """Chat's `logprobs.content` (a choice's, or a chunk's) as an output_text part's `logprobs`:
    the same per-token entries (token, logprob, bytes, top_logprobs); [] when there are none."""
    entries = as_object(logprobs).get("content")
    out: list[Json] = []
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict):
            continue
        tops = entry.get("top_logprobs")
        out.append(
            {
                "token": entry.get("token"),
                "logprob": entry.get("logprob"),
                "bytes": entry.get("bytes"),
                "top_logprobs": [
                    {"token": t.get("token"), "logprob": t.get("logprob"), "bytes": t.get("bytes")}
                    for t in (tops if isinstance(tops, list) else ())
                    if isinstance(t, dict)
                ],
            }
        )
    return out


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, *, status: str = "completed"
) -> Json:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def item_ids(response_id: str) -> tuple[str, str]:
    """The message item's id and the prefix of function call item ids, from the response's."""
    suffix = response_id.removeprefix("resp_")
    return f"msg_{suffix}", f"fc_{suffix}_"


def finish_status(finish_reason: Any) -> tuple[str, Json | None]:
    """(`status`, `incomplete_details`) for a chat finish reason."""
    reason = INCOMPLETE.get(finish_reason) if isinstance(finish_reason, str) else None
    if reason is None:
        return "completed", None
    return "incomplete", {"reason": reason}


def response_from_chat(
    chat: Json, *, response_id: str, created_at: int, model: str, echo: Json, usage: Json | None
) -> Json:
    """A complete chat completion (first choice) as a finished `response` object."""
    choices = chat.get("choices")
    choice = as_object(choices[0] if isinstance(choices, list) and choices else None)
    message = as_object(choice.get("message"))
    status, incomplete = finish_status(choice.get("finish_reason"))
    msg_id, fc_prefix = item_ids(response_id)
    output: list[Json] = []
    text = message.get("content") if isinstance(message.get("content"), str) else None
    refusal = message.get("refusal") if isinstance(message.get("refusal"), str) else None
    if text or refusal or not message.get("tool_calls"):
        item = message_item(msg_id, text or "", status=status)
        if refusal:
            item["content"] = [{"type": "refusal", "refusal": refusal}]
        elif item["content"]:
            item["content"][0]["logprobs"] = token_logprobs(choice.get("logprobs"))
        output.append(item)
    for i, call in enumerate(message.get("tool_calls") or ()):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            continue
        output.append(
            function_call_item(
                f"{fc_prefix}{i}",
                str(call.get("id") or f"call_{i}"),
                str(fn.get("name") or ""),
                str(fn.get("arguments") or ""),
            )
        )
    # `model` is the name the client asked for (a group or "auto"), as in the stream's events.
    body = response_shell(response_id, created_at, model, echo)
    body.update(status=status, incomplete_details=incomplete, output=output, usage=usage)
    if isinstance(chat.get("service_tier"), str):  # the tier that served it ("default" for auto)
        body["service_tier"] = chat["service_tier"]
    return body
