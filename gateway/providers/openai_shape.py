"""OpenAI's shape for what OpenAI-compatible servers answer a little differently.

Clients parse what the gateway passes on with OpenAI's types, some strictly (typed SDKs in Go,
Rust, Java, C# refuse a missing `id` or an unknown finish reason; LangChain and the Responses API
translation `json.loads` a tool call's `arguments`). Servers that teams run themselves stray in
small ways, each mended here at the one place every answer passes through:

- TGI's Messages API answers a tool call's `arguments` as a JSON object, not a string;
- TGI says `finish_reason: "stop_sequence"` (older versions `"eos_token"`), others `"eos"`,
  `"end_turn"`, `"max_tokens"`, or OpenAI's in capitals (`"STOP"`, `"MAX_TOKENS"`): OpenAI's
  reasons are `stop`, `length`, `tool_calls`, `content_filter`, `function_call`;
- a second parallel tool call streamed under the first one's `index` with an id of its own
  (SGLang's and some vLLM tool parsers: `index` 0 for every call), or with no `index` at all,
  would be joined to the first by every client (and by the gateway's own assembly): each call
  gets an index of its own;
- TGI sends `"id": ""`, and small servers leave out `id` with `object`, `created` and `model`:
  an answer without an id gets whichever of the four it lacks (one with an id is left as sent);
- OpenRouter's usage says what the request cost the operator (`cost`, `cost_details`,
  `is_byok`): the operator's price is not the tenant's business (the gateway says what it
  bills in its own headers and `x_thriftgate`), so those fields are dropped.

A stream keeps one made-up id and creation time for all its chunks, as OpenAI's do.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

Json = dict[str, Any]

# Finish reasons of other servers, as OpenAI names them. "error" is not here: it is a failure.
FINISH_REASONS = {
    "eos_token": "stop",  # TGI before 2.x, and its /generate API
    "eos": "stop",
    "stop_sequence": "stop",  # TGI: a `stop` string was met
    "end_turn": "stop",
    "stop_token": "stop",
    "max_tokens": "length",
    "max_length": "length",
    "model_length": "length",
    "tool_use": "tool_calls",
    "complete": "stop",  # Cohere
    "tool_call": "tool_calls",
}
OPENAI_FINISH_REASONS = frozenset(
    {"stop", "length", "tool_calls", "content_filter", "function_call"}
)


class Shaper:
    """Mends one answer, or each chunk of one stream, in place."""

    __slots__ = ("_calls", "_chat", "_created", "_id", "_model")

    def __init__(self, model: str, *, chat: bool) -> None:
        self._model = model
        self._chat = chat
        self._id: str | None = None
        self._created: int | None = None
        # per choice: the server's tool-call index -> (the call's id, the index clients see)
        self._calls: dict[int, dict[int | None, tuple[str, int]]] = {}

    def body(self, body: Json) -> Json:
        if not body.get("id"):
            self._fill(body, "chat.completion" if self._chat else "text_completion")
        usage = body.get("usage")
        if type(usage) is dict and "cost" in usage:
            _operator_cost(usage)
        for choice in _choices(body):
            _finish(choice)
            message = choice.get("message")
            if isinstance(message, dict):
                _arguments(message)
        return body

    def chunk(self, chunk: Json) -> Json:
        if not chunk.get("id"):
            self._fill(chunk, "chat.completion.chunk" if self._chat else "text_completion")
        usage = chunk.get("usage")
        if type(usage) is dict and "cost" in usage:
            _operator_cost(usage)
        choices = chunk.get("choices")
        for choice in choices if type(choices) is list else ():  # every chunk: kept lean
            if type(choice) is not dict:
                continue
            if choice.get("finish_reason") is not None:
                _finish(choice)
            delta = choice.get("delta")
            if type(delta) is dict and delta.get("tool_calls"):
                _arguments(delta)
                index = choice.get("index", 0)
                self._index_calls(index if isinstance(index, int) else 0, delta["tool_calls"])
        return chunk

    def _index_calls(self, choice: int, calls: Any) -> None:
        """Give each streamed tool call its own `index`: a new id under an index already
        taken by another call is a new call."""
        seen = self._calls.setdefault(choice, {})
        for call in calls if isinstance(calls, list) else ():
            if not isinstance(call, dict):
                continue
            theirs = call.get("index")
            theirs = theirs if isinstance(theirs, int) and not isinstance(theirs, bool) else None
            given = call.get("id")
            new_id = given if isinstance(given, str) else ""
            known = seen.get(theirs)
            if known is None or (new_id and known[0] and new_id != known[0]):
                taken = {ours for _, ours in seen.values()}
                ours = theirs if theirs is not None and theirs not in taken else len(taken)
                while ours in taken:
                    ours += 1
                known = seen[theirs] = (new_id, ours)
            elif new_id and not known[0]:
                seen[theirs] = (new_id, known[1])
            if theirs != known[1]:
                call["index"] = known[1]

    def _fill(self, body: Json, kind: str) -> None:
        if not isinstance(body.get("id"), str) or not body["id"]:
            if self._id is None:
                self._id = ("chatcmpl-" if self._chat else "cmpl-") + uuid.uuid4().hex
            body["id"] = self._id
        if not isinstance(body.get("created"), int):
            if self._created is None:
                self._created = int(time.time())
            body["created"] = self._created
        if not isinstance(body.get("model"), str) or not body["model"]:
            body["model"] = self._model
        if not isinstance(body.get("object"), str):
            body["object"] = kind


OPERATOR_COST_FIELDS = ("cost", "cost_details", "is_byok")


def _operator_cost(usage: Json) -> None:
    """Drop what the upstream says the request cost the operator (OpenRouter's usage)."""
    for field in OPERATOR_COST_FIELDS:
        usage.pop(field, None)


def _choices(body: Json) -> list[Json]:
    choices = body.get("choices")
    if not isinstance(choices, list):
        return []
    return [c for c in choices if isinstance(c, dict)]


def _finish(choice: Json) -> None:
    reason = choice.get("finish_reason")
    if not isinstance(reason, str) or reason in OPENAI_FINISH_REASONS:
        return
    lower = reason.lower()  # "STOP", "MAX_TOKENS" (Gemini's own names), "COMPLETE" (Cohere)
    if lower in FINISH_REASONS:
        choice["finish_reason"] = FINISH_REASONS[lower]
    elif lower in OPENAI_FINISH_REASONS:
        choice["finish_reason"] = lower


def _arguments(message: Json) -> None:
    """A tool call's arguments as the JSON text OpenAI sends, where a server sent the object."""
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            args = fn.get("arguments")
            if args is not None and not isinstance(args, str):
                fn["arguments"] = orjson.dumps(args).decode()
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        args = legacy.get("arguments")
        if args is not None and not isinstance(args, str):
            legacy["arguments"] = orjson.dumps(args).decode()


def failed_choice(body: Json) -> Json | None:
    """The choice that ended in an error (`finish_reason: "error"`: OpenRouter's mid-stream
    failure), if any."""
    choices = body.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict) and choice.get("finish_reason") == "error":
            return choice
    return None
