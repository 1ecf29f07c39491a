"""Serve a cached answer in the shape the client asked for: one JSON body, or a replayed SSE
chunk stream (role, content pieces, finish reason, and the usage chunk when asked for)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

Json = dict[str, Any]
PIECE_CHARS = 96  # content characters per replayed chunk
# Message fields a replay streams before the answer's content, as a reasoning model does.
LEADING_FIELDS = ("reasoning_content", "reasoning")
# Message fields the replay streams its own way (or never holds: a refusal is not cached).
_OWN_WAY = frozenset({"role", "content", "tool_calls", "refusal", *LEADING_FIELDS})


def fresh_body(stored: bytes, request_id: str) -> Json:
    """The cached response with a new id and timestamp (clients may key on them)."""
    body: Json = orjson.loads(stored)
    prefix = "chatcmpl" if body.get("object") == "chat.completion" else "cmpl"
    body["id"] = f"{prefix}-cache-{request_id}"
    body["created"] = int(time.time())
    # No tier served a hit: the stored one is the request's that filled the cache (a flex
    # request's answer replayed to a priority request said "flex").
    body.pop("service_tier", None)
    return body


def split_text(text: str, size: int = PIECE_CHARS) -> list[str]:
    """Pieces of at most ~`size` characters, cut after whitespace; they join back exactly."""
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            cut = text.rfind(" ", start + 1, end)
            if cut > start:
                end = cut + 1
        pieces.append(text[start:end])
        start = end
    return pieces


def chunks_of(body: Json, *, include_usage: bool) -> list[Json]:
    """The chunk objects an upstream would have streamed for this complete response."""
    chat = body.get("object") == "chat.completion"
    meta = {
        "id": body.get("id"),
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": body.get("created"),
        "model": body.get("model"),
    }
    if body.get("system_fingerprint") is not None:
        meta["system_fingerprint"] = body["system_fingerprint"]
    out: list[Json] = []
    for choice in body.get("choices") or ():
        idx = choice.get("index", 0)
        finish = choice.get("finish_reason")
        if chat:
            msg = choice.get("message") or {}
            first: Json = {"role": msg.get("role") or "assistant", "content": ""}
            deltas: list[Json] = [first]
            deltas += [{k: msg[k]} for k in LEADING_FIELDS if _said(msg.get(k))]
            deltas += [{"content": piece} for piece in split_text(msg.get("content") or "")]
            if msg.get("tool_calls"):
                deltas.append(
                    {"tool_calls": [{**c, "index": i} for i, c in enumerate(msg["tool_calls"])]}
                )
            # the rest as they are, one delta each: a legacy `function_call`, `annotations`...
            deltas += [{k: v} for k, v in msg.items() if k not in _OWN_WAY and _said(v)]
            for delta in deltas:
                out.append(
                    {**meta, "choices": [{"index": idx, "delta": delta, "finish_reason": None}]}
                )
            out.append({**meta, "choices": [{"index": idx, "delta": {}, "finish_reason": finish}]})
        else:
            pieces = split_text(choice.get("text") or "") or [""]
            for i, piece in enumerate(pieces):
                last = i == len(pieces) - 1
                out.append(
                    {
                        **meta,
                        "choices": [
                            {"index": idx, "text": piece, "finish_reason": finish if last else None}
                        ],
                    }
                )
    if include_usage and isinstance(body.get("usage"), dict):
        out.append({**meta, "choices": [], "usage": body["usage"]})
    return out


def _said(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


async def replay(chunks: list[Json]) -> AsyncIterator[Json]:
    for chunk in chunks:
        yield chunk
