"""OpenAI wire format for the engine: parse request bodies, build responses and stream chunks.

Bodies stay plain dicts (as in `gateway.providers.base`); parsing validates only what the engine
uses and rejects what it cannot honour with a 400 naming the parameter: code
`unsupported_parameter` for what is valid OpenAI but beyond this engine (tools and tool calls in
history, images and other non-text parts, the legacy `function` role, several prompts, response
formats, logprobs, logit_bias, presence/frequency penalties, audio output, web search), so a
gateway group can fall back to a deployment that can; `invalid_request` for what is malformed.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from local_engine.errors import BadEngineRequest
from local_engine.sampling_params import SamplingParams

Json = dict[str, Any]
Endpoint = Literal["chat/completions", "completions"]
ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
MIN_TOP_P = 1e-6
UNSUPPORTED_ROLES = frozenset({"function"})  # valid OpenAI (deprecated), not served here


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    endpoint: Endpoint
    model: str | None
    messages: list[dict[str, str]] | None  # chat
    prompt: str | list[int] | None  # completions
    max_tokens: int | None
    sampling: SamplingParams
    stop: list[str]
    stream: bool
    include_usage: bool
    max_tokens_param: str = "max_tokens"  # or "max_completion_tokens": what errors name


def _number(body: Json, name: str, lo: float, hi: float, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise BadEngineRequest(f"'{name}' must be a number between {lo} and {hi}", param=name)
    return float(value)


def _content_text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if (
                isinstance(part, dict)
                and isinstance(part.get("type"), str)
                and (part["type"] != "text")
            ):
                raise _unsupported(f"{part['type']!r} content parts", f"messages[{index}]")
            if not isinstance(part, dict) or part.get("type") != "text":
                raise BadEngineRequest(
                    "the local engine accepts only text content parts", param=f"messages[{index}]"
                )
            text = part.get("text")
            if not isinstance(text, str):  # str() put "None" or a dict's repr into the prompt
                raise BadEngineRequest(
                    "a text content part needs a string 'text'",
                    param=f"messages[{index}].content[{j}].text",
                )
            parts.append(text)
        return "".join(parts)
    raise BadEngineRequest(
        "message content must be a string or a list of parts", param=f"messages[{index}].content"
    )


def _messages(body: Json) -> list[dict[str, str]]:
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadEngineRequest("'messages' must be a non-empty list", param="messages")
    out = []
    for i, msg in enumerate(raw):
        if isinstance(msg, dict) and msg.get("role") in UNSUPPORTED_ROLES:
            raise _unsupported(f"the {msg['role']!r} role", f"messages[{i}]")
        for calls in ("tool_calls", "function_call"):  # dropped, they would garble the history
            if isinstance(msg, dict) and msg.get(calls):
                raise _unsupported("tool calls in the conversation", f"messages[{i}].{calls}")
        if not isinstance(msg, dict) or msg.get("role") not in ROLES:
            raise BadEngineRequest(f"messages[{i}] needs a valid 'role'", param=f"messages[{i}]")
        role = "system" if msg["role"] == "developer" else str(msg["role"])
        out.append({"role": role, "content": _content_text(msg.get("content"), i)})
    return out


def _prompt(body: Json) -> str | list[int]:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt)
    ):
        return [int(t) for t in prompt]
    if (
        isinstance(prompt, list)
        and len(prompt) > 1
        and all(isinstance(p, str | list) for p in prompt)
    ):
        raise _unsupported("several prompts in one request", "prompt")
    raise BadEngineRequest("'prompt' must be one string or one list of token ids", param="prompt")


def _unsupported(what: str, param: str) -> BadEngineRequest:
    return BadEngineRequest(
        f"the local engine does not support {what}", param=param, code="unsupported_parameter"
    )


def _refuse_unsupported(body: Json) -> None:
    """A 400 for what the engine cannot honour: ignoring it would answer 200 with something else
    (prose instead of a tool call or JSON, no logprobs), and a gateway can try a deployment that
    does support it."""
    if body.get("n", 1) not in (None, 1):
        raise _unsupported("n > 1", "n")
    for tools_name, choice_name in (("tools", "tool_choice"), ("functions", "function_call")):
        choice = body.get(choice_name)
        if choice not in (None, "none", "auto"):
            raise _unsupported("tool calls; send 'none' or 'auto'", choice_name)
        if body.get(tools_name) and choice != "none":  # with "none" no tool may be called
            raise _unsupported("tool calls; send tool_choice 'none' to answer in text", tools_name)
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise _unsupported("response formats other than text", "response_format")
    logprobs = body.get("logprobs")
    if logprobs is not None and logprobs is not False:  # completions' `logprobs: 0` asks too
        raise _unsupported("log probabilities", "logprobs")
    if body.get("top_logprobs") not in (None, 0):
        raise _unsupported("log probabilities", "top_logprobs")
    if body.get("audio") is not None:
        raise _unsupported("audio output", "audio")
    modalities = body.get("modalities")
    if isinstance(modalities, list) and any(m != "text" for m in modalities):
        raise _unsupported("output modalities other than text", "modalities")
    if body.get("web_search_options") is not None:
        raise _unsupported("web search", "web_search_options")
    if body.get("echo"):
        raise _unsupported("echo", "echo")
    if body.get("suffix"):
        raise _unsupported("suffix", "suffix")
    if body.get("best_of") not in (None, 1):
        raise _unsupported("best_of > 1", "best_of")
    # Sampling adjustments the engine does not implement: their defaults (empty, 0) change
    # nothing and pass; anything else would be answered as if they were not there.
    if body.get("logit_bias"):
        raise _unsupported("logit_bias", "logit_bias")
    for penalty in ("presence_penalty", "frequency_penalty"):
        if body.get(penalty) not in (None, 0):
            raise _unsupported(f"a non-zero {penalty}", penalty)


def parse_request(endpoint: Endpoint, body: Json) -> ParsedRequest:
    if not isinstance(body, dict):
        raise BadEngineRequest("the request body must be a JSON object")
    _refuse_unsupported(body)
    # A null `max_completion_tokens` (clients that write every field) is absent, as the gateway
    # reads it: `max_tokens` beside it still caps the answer.
    limit_name = (
        "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    )
    max_tokens = body.get(limit_name)
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise BadEngineRequest(f"'{limit_name}' must be a positive integer", param=limit_name)
    stop = body.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop):
        stops = list(stop)
    else:
        raise BadEngineRequest("'stop' must be a string or up to 4 strings", param="stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadEngineRequest("'seed' must be an integer", param="seed")
    sampling = SamplingParams(
        temperature=_number(body, "temperature", 0.0, 2.0, 1.0),
        # OpenAI takes 0..1; 0 is the smallest nucleus (the most likely token), not an error
        top_p=max(MIN_TOP_P, _number(body, "top_p", 0.0, 1.0, 1.0)),
        seed=seed,
    )
    stream = bool(body.get("stream", False))
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise BadEngineRequest("'stream_options' must be an object", param="stream_options")
    model = body.get("model")
    return ParsedRequest(
        endpoint=endpoint,
        model=model if isinstance(model, str) else None,
        messages=_messages(body) if endpoint == "chat/completions" else None,
        prompt=_prompt(body) if endpoint == "completions" else None,
        max_tokens=max_tokens,
        sampling=sampling,
        stop=stops,
        stream=stream,
        include_usage=stream and bool(options.get("include_usage", False)),
        max_tokens_param=limit_name,
    )


def new_id(endpoint: Endpoint) -> str:
    prefix = "chatcmpl" if endpoint == "chat/completions" else "cmpl"
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int, energy_joules: float | None = None) -> Json:
    """OpenAI's usage object; `energy_joules` (our extension) only when energy was measured."""
    out: Json = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if energy_joules is not None:
        out["energy_joules"] = round(energy_joules, 6)
    return out


def add_energy(body: Json, energy_joules: float | None) -> Json:
    """Put `usage.energy_joules` into a response or usage chunk built elsewhere (vLLM's)."""
    if energy_joules is not None and isinstance(body.get("usage"), dict):
        body["usage"] = {**body["usage"], "energy_joules": round(energy_joules, 6)}
    return body


def response(
    req: ParsedRequest,
    rid: str,
    model: str,
    text: str,
    finish: str,
    prompt_n: int,
    gen_n: int,
    *,
    energy_joules: float | None = None,
) -> Json:
    created = int(time.time())
    if req.endpoint == "chat/completions":
        choice: Json = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": finish,
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        obj = "text_completion"
    return {
        "id": rid,
        "object": obj,
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage(prompt_n, gen_n, energy_joules),
    }


def chunk(
    req: ParsedRequest,
    rid: str,
    model: str,
    created: int,
    *,
    text: str | None = None,
    role: bool = False,
    finish: str | None = None,
) -> Json:
    if req.endpoint == "chat/completions":
        delta: Json = {}
        if role:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        choice: Json = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        obj = "text_completion"
    out: Json = {"id": rid, "object": obj, "created": created, "model": model, "choices": [choice]}
    if req.include_usage:
        out["usage"] = None
    return out


def usage_chunk(
    req: ParsedRequest,
    rid: str,
    model: str,
    created: int,
    prompt_n: int,
    gen_n: int,
    *,
    energy_joules: float | None = None,
) -> Json:
    obj = "chat.completion.chunk" if req.endpoint == "chat/completions" else "text_completion"
    return {
        "id": rid,
        "object": obj,
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage(prompt_n, gen_n, energy_joules),
    }
