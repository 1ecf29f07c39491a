"""Cache keys: the exact key, the semantic scope and query of a request, and whether it is safe.

- exact key   = hash(endpoint, model group, every message, every parameter that may change
                the answer: all but a short list of bookkeeping fields, and the compression
                that will cut the prompt, if any)
- scope key   = hash(tenant, endpoint, model group, system prompt + earlier turns, parameters,
                the last user turn's fields other than its text, such as `name`)
- query text  = the last user turn, the only part compared by meaning (when it is short enough
                for the embedding to see all of it, and the request does not ask for JSON:
                others are cached exactly only; a turn longer than a question hits only with
                the same content words, `verifier.LONG_TURN_WORDS`)

The tenant is in both hashes, so entries are never shared across tenants, and the scope pins
everything except the last user turn: a semantic hit can only differ in how that one
question is worded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

Json = dict[str, Any]

# Request fields that never change what the model answers; every other field enters the keys.
# A deny-list, not an allow-list: the gateway passes unknown fields through to the upstream
# (vLLM's guided_json / guided_choice, chat_template_kwargs, min_p, a provider's thinking or
# web_search_options...), and any of them may change the answer, so a field nobody listed
# here splits the cache rather than shares it.
# - model, messages, prompt: keyed on their own (the model group; the turns; the prompt)
# - stream, stream_options: how the answer is delivered; a hit replays it either way
# - user, safety_identifier: who the end user is, for the provider's abuse monitoring
# - metadata, store: tags for, and whether to keep, the provider's copy of the completion
# - service_tier: how fast and at what price, not what
# - prompt_cache_key, prompt_cache_retention: routing hints for the provider's prompt cache
NON_OUTPUT_FIELDS = frozenset(
    {
        "model", "messages", "prompt", "stream", "stream_options", "user", "safety_identifier",
        "metadata", "store", "service_tier", "prompt_cache_key", "prompt_cache_retention",
    }
)  # fmt: skip


# The embedding reads 256 tokens (~1,000 characters of English): past about twice that, two
# texts could differ where it does not look, and analysing megabytes would hold up every
# other tenant's lookup on the cache's one worker thread.
MAX_QUERY_CHARS = 2_000


@dataclass(frozen=True, slots=True)
class CacheKeys:
    exact: str  # sha256 hex of the normalised request
    scope: str  # sha256 hex of everything but the last user turn
    query: str | None  # the last user turn's text; None when it cannot be compared by meaning


@dataclass(frozen=True, slots=True)
class Safety:
    """Why a request may (or may not) be cached under the tenant's policy."""

    cacheable: bool
    reason: str  # "ok", "temperature", "tool_calls", "n", "logprobs", "audio"


def request_keys(
    tenant_id: str, endpoint: str, model: str, body: Json, *, variant: str = ""
) -> CacheKeys:
    """`variant`: what else decides the prompt the upstream will see (the compression that
    applies); "" when the request goes out as it is, which keeps those keys as they were."""
    params = output_params(body)
    if variant:
        params = {**params, "\x00variant": variant}  # no body field starts with a NUL
    if endpoint == "chat":
        messages = [_normal_message(m) for m in body.get("messages") or ()]
        exact = _digest({"t": tenant_id, "e": endpoint, "m": model, "msgs": messages, "p": params})
        query: str | None = None
        earlier = messages
        pinned: Json = {"t": tenant_id, "e": endpoint, "m": model, "p": params}
        if messages and messages[-1].get("role") == "user":
            query = _text_only(messages[-1].get("content"))
            earlier = messages[:-1]
            # Only the last turn's text is compared by meaning; its other fields (`name`: who
            # is speaking, in a multi-user chat) must match exactly.
            rest = {k: v for k, v in messages[-1].items() if k not in ("role", "content")}
            if rest:
                pinned["last"] = rest
        scope = _digest({**pinned, "ctx": earlier})
        return CacheKeys(exact=exact, scope=scope, query=_comparable(query, body))
    prompt = body.get("prompt")
    text = _normal_text(prompt) if isinstance(prompt, str) else None
    exact = _digest({"t": tenant_id, "e": endpoint, "m": model, "prompt": prompt, "p": params})
    scope = _digest({"t": tenant_id, "e": endpoint, "m": model, "p": params})
    return CacheKeys(exact=exact, scope=scope, query=_comparable(text, body))


# Fields whose objects' key order the model reads: a schema's properties are written in their
# order (OpenAI's Structured Outputs), so `{reasoning, answer}` reasons before it answers and
# `{answer, reasoning}` does not; tools are shown to the model as they are written. Keyed as
# sent, where every other object's keys are sorted.
ORDERED_FIELDS = frozenset({"response_format", "tools", "functions"})


def output_params(body: Json) -> Json:
    """Every field of the request that may change the answer (see `NON_OUTPUT_FIELDS`)."""
    return {
        k: orjson.dumps(v).decode() if k in ORDERED_FIELDS else v
        for k, v in body.items()
        if k not in NON_OUTPUT_FIELDS and v is not None
    }


def _comparable(text: str | None, body: Json) -> str | None:
    if structured_output(body):
        return None
    return text if text and len(text) <= MAX_QUERY_CHARS else None


def structured_output(body: Json) -> bool:
    """Whether the request asks for JSON. Such a request is an app's template filled with data
    ("Classify this review: the battery life is great"): one worded otherwise is other data,
    not the same question (the cached {"label": "positive"} answered "...is terrible", cosine
    0.978), so it is cached exactly only."""
    fmt = body.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") not in (None, "text")


def safety(
    body: Json,
    *,
    max_temperature: float = 0.0,
    unset_temperature_ok: bool = True,
    tool_calls_ok: bool = False,
    multi_choice_ok: bool = False,
) -> Safety:
    """Only deterministic, self-contained requests are cached unless the tenant widens it."""
    temperature = body.get("temperature")
    if temperature is None:
        if not unset_temperature_ok:
            return Safety(False, "temperature")
    elif not isinstance(temperature, int | float) or temperature > max_temperature:
        return Safety(False, "temperature")
    n = body.get("n")
    if n not in (None, 1) and not multi_choice_ok:
        return Safety(False, "n")
    if not tool_calls_ok and _has_tool_calls(body):
        return Safety(False, "tool_calls")
    if body.get("logprobs") or body.get("top_logprobs"):
        return Safety(False, "logprobs")  # per-token data a replay cannot honestly give
    if _wants_audio(body):
        # The answer's audio carries an id the provider forgets at its `expires_at`: a replay
        # would hand out a dead id for the next turn to refer to.
        return Safety(False, "audio")
    return Safety(True, "ok")


def _wants_audio(body: Json) -> bool:
    modalities = body.get("modalities")
    asked = isinstance(modalities, list | tuple) and "audio" in modalities
    return asked or bool(body.get("audio"))


def response_cacheable(body: Json | None, *, tool_calls_ok: bool = False) -> bool:
    """A complete, successful answer: choices present, none cut by a filter or an error."""
    if not isinstance(body, dict) or "error" in body:
        return False
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    for choice in choices:
        if not isinstance(choice, dict):
            return False
        if choice.get("finish_reason") not in ("stop", "length", "tool_calls", "function_call"):
            return False
        msg = choice.get("message")
        msg = msg if isinstance(msg, dict) else {}
        # `function_call` is the legacy `functions` API's tool call
        call = msg.get("tool_calls") or msg.get("function_call")
        if call and not tool_calls_ok:
            return False
        if not call and choice.get("finish_reason") in ("tool_calls", "function_call"):
            return False  # it stopped for a call it does not hold (lost on the way): a replay
            # would be an empty answer
        if msg.get("refusal"):
            return False  # a refusal is not an answer worth repeating (or repeatable: a replay
            # of a streamed one came back empty)
        if msg.get("audio"):
            return False  # see `safety`: the audio's id expires with the provider's copy
    return True


def _has_tool_calls(body: Json) -> bool:
    for m in body.get("messages") or ():
        if not isinstance(m, dict):
            continue
        if m.get("role") in ("tool", "function") or m.get("tool_calls") or m.get("function_call"):
            return True
    return False


def _normal_message(m: Any) -> Json:
    if not isinstance(m, dict):
        return {"raw": m}
    out: Json = {k: v for k, v in m.items() if v is not None}
    content = out.get("content")
    if isinstance(content, str):
        out["content"] = _normal_text(content)
    elif isinstance(content, list):
        out["content"] = [
            {**p, "text": _normal_text(p["text"])}
            if isinstance(p, dict) and isinstance(p.get("text"), str)
            else p
            for p in content
        ]
    return out


def _text_only(content: Any) -> str | None:
    """The turn's text, or None if it carries anything else (an image, audio, a file)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                return None
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "\n".join(texts)
    return None


def _normal_text(text: str) -> str:
    # Line endings and outer whitespace never change an answer; inner spacing may (code).
    return text.replace("\r\n", "\n").strip()


def _digest(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()
