"""Request validation: a clear 400 for every malformed body, everything else passed through.

Bodies stay plain dicts: unknown fields (provider extensions) reach the upstream untouched.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequest, invalid_value
from gateway.pipeline.validate_controls import check_answer_controls

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
MAX_TOKENS_LIMIT = 1_000_000
MAX_N = 128


def int_field(body: dict[str, Any], name: str, lo: int, hi: int) -> None:
    """`body[name]`, when present, must be an integer in [lo, hi]."""
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_value(f"'{name}' must be an integer.", name)
    if not lo <= value <= hi:
        raise invalid_value(f"'{name}' must be between {lo} and {hi}; got {value}.", name)


def _num_field(body: dict[str, Any], name: str, lo: float, hi: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_value(f"'{name}' must be a number.", name)
    if not lo <= value <= hi:
        raise invalid_value(f"'{name}' must be between {lo:g} and {hi:g}; got {value}.", name)


def validate_common(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_body")
    body: dict[str, Any] = raw
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest(
            "'model' is required and must be a non-empty string.",
            param="model",
            code="missing_model" if model is None else "invalid_value",
        )
    if len(model) > 200:
        raise invalid_value("'model' is too long.", "model")
    return body


def validate_generation(body: dict[str, Any]) -> None:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid_value("'stream' must be a boolean.", "stream")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise invalid_value("'stream_options' must be an object.", "stream_options")
    int_field(body, "max_tokens", 1, MAX_TOKENS_LIMIT)
    int_field(body, "max_completion_tokens", 1, MAX_TOKENS_LIMIT)
    int_field(body, "n", 1, MAX_N)
    int_field(body, "seed", -(2**63), 2**63 - 1)
    _num_field(body, "temperature", 0.0, 2.0)
    _num_field(body, "top_p", 0.0, 1.0)
    _num_field(body, "presence_penalty", -2.0, 2.0)
    _num_field(body, "frequency_penalty", -2.0, 2.0)
    stop = body.get("stop")
    bad_stop = (
        not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop)
    )
    if stop is not None and not isinstance(stop, str) and bad_stop:
        raise invalid_value("'stop' must be a string or a list of up to 4 strings.", "stop")
    # The fields the cache answers without (keys.NON_OUTPUT_FIELDS): checked here, so a wrong
    # one is the same 400 on a hit as on a miss (where the upstream refuses it)
    for name, kind, what in _NON_OUTPUT_TYPES:
        value = body.get(name)
        if value is not None and not isinstance(value, kind):
            raise invalid_value(f"'{name}' must be {what}.", name)


_NON_OUTPUT_TYPES: tuple[tuple[str, type, str], ...] = (
    ("user", str, "a string"),
    ("safety_identifier", str, "a string"),
    ("prompt_cache_key", str, "a string"),
    ("service_tier", str, "a string"),
    ("metadata", dict, "an object"),
    ("store", bool, "a boolean"),
)


def validate_chat(raw: Any) -> dict[str, Any]:
    body = validate_common(raw)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest(
            "'messages' must be a non-empty array.",
            param="messages",
            code="invalid_value" if messages is not None else "missing_messages",
        )
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise invalid_value(f"'{where}' must be an object.", where)
        role = msg.get("role")
        if role not in ROLES:
            raise invalid_value(f"'{where}.role' must be one of {sorted(ROLES)}.", f"{where}.role")
        content = msg.get("content")
        if content is not None and not isinstance(content, str | list):
            raise invalid_value(
                f"'{where}.content' must be a string or an array of parts.", f"{where}.content"
            )
        if content is None and role in ("system", "developer", "user"):
            raise invalid_value(
                f"'{where}.content' is required for role '{role}'.", f"{where}.content"
            )
        if isinstance(content, list):
            for j, part in enumerate(content):
                content_part(part, f"{where}.content[{j}]")
        if msg.get("tool_calls") is not None:
            tool_calls(msg["tool_calls"], f"{where}.tool_calls")
    check_answer_controls(body)
    validate_generation(body)
    return body


# A part's payload field and the string it must hold (OpenAI's shapes). Other part types pass:
# providers have their own (Anthropic's `document` through litellm).
_PART_PAYLOAD = {
    "text": ("text", None),
    "image_url": ("image_url", "url"),
    "input_audio": ("input_audio", "data"),
    "file": ("file", None),
}


def content_part(part: Any, where: str) -> None:
    """A chat content part must be an object with a string `type`, and the known types must
    carry their payload: OpenAI refuses these with a 400, but some upstreams (vLLM, Ollama)
    fail with a 500 that would count against their breaker, and the cache, the compressor and
    the local engine would read a text part without its text as empty."""
    if not isinstance(part, dict):
        raise invalid_value(f"'{where}' must be an object with a 'type'.", where)
    kind = part.get("type")
    if not isinstance(kind, str):
        raise invalid_value(f"'{where}.type' must be a string.", f"{where}.type")
    if kind not in _PART_PAYLOAD:
        return
    name, inner = _PART_PAYLOAD[kind]
    value = part.get(name)
    if kind == "text":
        if not isinstance(value, str):
            raise invalid_value(f"'{where}.text' must be a string.", f"{where}.text")
    elif kind == "image_url" and isinstance(value, str):
        return  # the bare URL that litellm and several SDKs accept
    elif not isinstance(value, dict) or (inner and not isinstance(value.get(inner), str)):
        what = f"an object with a string '{inner}'" if inner else "an object"
        raise invalid_value(f"'{where}.{name}' must be {what}.", f"{where}.{name}")


def tool_calls(calls: Any, where: str) -> None:
    """An assistant turn's `tool_calls`: an array of objects, a function call naming its
    function and carrying its arguments as JSON text, as OpenAI requires (an object for
    `arguments` is the usual slip)."""
    if not isinstance(calls, list):
        raise invalid_value(f"'{where}' must be an array of tool calls.", where)
    for k, call in enumerate(calls):
        at = f"{where}[{k}]"
        if not isinstance(call, dict):
            raise invalid_value(f"'{at}' must be an object.", at)
        if call.get("type", "function") != "function":
            continue  # custom tool calls and providers' own kinds
        fn = call.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise invalid_value(
                f"'{at}.function' must be an object with a 'name'.", f"{at}.function"
            )
        if not isinstance(fn.get("arguments"), str):
            raise invalid_value(
                f"'{at}.function.arguments' must be a string (the arguments as JSON text).",
                f"{at}.function.arguments",
            )


def validate_completion(raw: Any) -> dict[str, Any]:
    body = validate_common(raw)
    text_or_tokens(body, "prompt")
    validate_generation(body)
    return body


def validate_embedding(raw: Any) -> dict[str, Any]:
    body = validate_common(raw)
    text_or_tokens(body, "input")
    # `dimensions: 0` was refused only after the upstream answered (and billed) it, and an
    # unknown `encoding_format` got floats back as if it had said "float"
    int_field(body, "dimensions", 1, MAX_TOKENS_LIMIT)
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ("float", "base64"):
        raise invalid_value("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise invalid_value("'user' must be a string.", "user")
    return body


def text_or_tokens(body: dict[str, Any], name: str) -> None:
    """`body[name]` must be one of OpenAI's prompt/input forms: a string, or a non-empty array
    of strings, token ids or token-id arrays."""
    value = body.get(name)
    ok = isinstance(value, str) or (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(x, str | int) or (isinstance(x, list) and all(isinstance(y, int) for y in x))
            for x in value
        )
    )
    if not ok:
        raise invalid_value(
            f"'{name}' must be a string, an array of strings, an array of token ids or an "
            "array of token-id arrays.",
            name,
        )
