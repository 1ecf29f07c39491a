"""Rebuild a complete response object from streamed chunks (for the ledger and the cache)."""

from __future__ import annotations

import json
from typing import Any

Json = dict[str, Any]

# The field of a stream's closing chunk that says what the request cost and saved
# (pipeline.closing_chunk): `{"cost_usd": "...", "saved_usd": "..."}`.
PRICED = "x_thriftgate"

# Delta fields that carry generated output; a delta with only `role` (or Azure's first chunk of
# content-filter results, with no choices) does not.
# Reasoning comes as `reasoning_content` (DeepSeek, vLLM's reasoning parsers, llama.cpp) or
# `reasoning` (Ollama, OpenRouter, newer vLLM).
_OUTPUT_FIELDS = (
    "content",
    "refusal",
    "tool_calls",
    "function_call",
    "reasoning_content",
    "reasoning",
    "audio",
)


def carries_output(chunk: Json) -> bool:
    """Whether a streamed chunk holds generated output or the end of it: when it arrives is the
    time to first token. A role-only opening chunk, which some providers send before the model
    has produced anything, is not."""
    choices = chunk.get("choices")
    if not choices:
        return chunk.get("usage") is not None  # the closing usage chunk: the stream is done
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        if choice.get("finish_reason") is not None or choice.get("text"):
            return True
        delta = choice.get("delta")
        if isinstance(delta, dict) and any(delta.get(k) for k in _OUTPUT_FIELDS):
            return True
    return False


def _piece(value: Any) -> str:
    """A streamed piece of a call's name or arguments; arguments sent whole as an object (a
    server that parsed them) are its JSON text, as OpenAI sends them."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return ""


# Every this many chunks, the text pieces that came since are joined into one block: a
# stream's copy for the ledger and the cache is then about its text's size. Kept as small
# strings, 100,000 tokens took 6.2 MB (~60 bytes a piece) for 0.5 MB of text, per stream.
_COMPACT_EVERY = 256
_TEXTS = ("content", "text", "refusal")


class Pieces:
    """A text streamed in pieces (a Responses stream's content part), kept compact: each
    `_COMPACT_EVERY` pieces are joined into one string."""

    __slots__ = ("_blocks", "_tail")

    def __init__(self) -> None:
        self._blocks: list[str] = []
        self._tail: list[str] = []

    def append(self, piece: str) -> None:
        tail = self._tail
        tail.append(piece)
        if len(tail) >= _COMPACT_EVERY:
            self._blocks.append("".join(tail))
            tail.clear()

    def text(self) -> str:
        return "".join(self._blocks) + "".join(self._tail)


class StreamAssembler:
    def __init__(self) -> None:
        self.meta: Json = {}
        self.usage: Json | None = None
        self._choices: dict[int, Json] = {}
        self.chunks = 0

    def add(self, chunk: Json) -> None:
        self.chunks += 1
        if self.chunks % _COMPACT_EVERY == 0:
            self._compact()
        if not self.meta:
            self.meta = {k: chunk.get(k) for k in ("id", "created", "model", "system_fingerprint")}
            self.meta["object"] = chunk.get("object")
        tier = chunk.get("service_tier")
        if isinstance(tier, str):  # the tier that served it (and sets its price): the last said
            self.meta["service_tier"] = tier
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            idx = choice.get("index", 0)
            acc = self._choices.setdefault(
                idx if isinstance(idx, int) else 0,
                {
                    "content": [],
                    "text": [],
                    "refusal": [],
                    "reasoning": {},  # reasoning_content / reasoning -> pieces
                    "blocks": {},  # a text's name -> its pieces joined so far (_compact)
                    "function_call": None,
                    "annotations": [],
                    "role": None,
                    "tools": {},
                    "finish_reason": None,
                },
            )
            if choice.get("finish_reason") is not None:
                acc["finish_reason"] = choice["finish_reason"]
            if isinstance(choice.get("text"), str):
                acc["text"].append(choice["text"])
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            if delta.get("role"):
                acc["role"] = delta["role"]
            if isinstance(delta.get("content"), str):
                acc["content"].append(delta["content"])
            if isinstance(delta.get("refusal"), str):
                acc["refusal"].append(delta["refusal"])
            for field in ("reasoning_content", "reasoning"):
                if isinstance(delta.get(field), str):
                    acc["reasoning"].setdefault(field, []).append(delta[field])
            fc = delta.get("function_call")
            if isinstance(fc, dict):  # the legacy `functions` API's call, in pieces
                call = acc["function_call"] = acc["function_call"] or {"name": "", "arguments": ""}
                call["name"] += _piece(fc.get("name"))
                call["arguments"] += _piece(fc.get("arguments"))
            if isinstance(delta.get("annotations"), list):
                acc["annotations"].extend(delta["annotations"])
            for call in delta.get("tool_calls") or ():
                if not isinstance(call, dict):
                    continue
                slot = acc["tools"].setdefault(
                    call.get("index", 0),
                    {"id": None, "type": "function", "name": "", "arguments": ""},
                )
                if call.get("id"):
                    slot["id"] = call["id"]
                fn = call.get("function") or {}
                if isinstance(fn, dict):
                    slot["name"] += _piece(fn.get("name"))
                    slot["arguments"] += _piece(fn.get("arguments"))

    def _compact(self) -> None:
        for acc in self._choices.values():
            blocks = acc["blocks"]
            texts = [(name, acc[name]) for name in _TEXTS]
            texts += [("reasoning." + k, v) for k, v in acc["reasoning"].items()]
            for name, pieces in texts:
                if pieces:
                    blocks.setdefault(name, []).append("".join(pieces))
                    pieces.clear()

    @staticmethod
    def _text(acc: Json, name: str, pieces: list[str]) -> str:
        return "".join([*acc["blocks"].get(name, ()), *pieces])

    def result(self, *, chat: bool) -> Json:
        choices = []
        for idx in sorted(self._choices):
            acc = self._choices[idx]
            if chat:
                message: Json = {
                    "role": acc["role"] or "assistant",
                    "content": self._text(acc, "content", acc["content"]),
                }
                refusal = self._text(acc, "refusal", acc["refusal"])
                if acc["refusal"] or "refusal" in acc["blocks"]:
                    message["refusal"] = refusal
                for field, pieces in acc["reasoning"].items():
                    message[field] = self._text(acc, "reasoning." + field, pieces)
                if acc["function_call"] is not None:
                    message["function_call"] = acc["function_call"]
                if acc["annotations"]:
                    message["annotations"] = acc["annotations"]
                if acc["tools"]:
                    message["tool_calls"] = [
                        {
                            "id": t["id"],
                            "type": "function",
                            "function": {"name": t["name"], "arguments": t["arguments"]},
                        }
                        for _, t in sorted(acc["tools"].items())
                    ]
                choices.append(
                    {"index": idx, "message": message, "finish_reason": acc["finish_reason"]}
                )
            else:
                choices.append(
                    {
                        "index": idx,
                        "text": self._text(acc, "text", acc["text"]),
                        "finish_reason": acc["finish_reason"],
                    }
                )
        body: Json = {**self.meta, "object": "chat.completion" if chat else "text_completion"}
        body["choices"] = choices
        if self.usage is not None:
            body["usage"] = self.usage
        return body
