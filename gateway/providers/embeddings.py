"""Embedding vectors in the size and encoding the client asked for.

OpenAI answers `encoding_format: "base64"` with each vector's little-endian float32 bytes in
base64, and a list of floats otherwise. An upstream may ignore the field: litellm drops it
(`drop_params`) for providers without it, and many OpenAI-compatible servers speak floats only.
The Node `openai` SDK asks for base64 whenever its caller chose no format and decodes whatever
comes back as base64 without looking, so floats passed on became a vector of zeros and noise.

`dimensions` may be ignored the same way (litellm drops it for Mistral, Hugging Face, Titan
v1...; some OpenAI-compatible servers ignore it): a 200 carried vectors of the model's full
size, which an index sized for `dimensions` refuses later. OpenAI answers a 400 for a model
without them; so does the gateway, as `unsupported_parameter`, for which dispatch tries the
group's next deployment.
"""

from __future__ import annotations

import base64
import binascii
import struct
from typing import Any

from gateway.accounting.tokenizer import encoding_for
from gateway.errors import InvalidRequest

Json = dict[str, Any]


def with_text_input(body: Json) -> Json:
    """`body` with token-id inputs decoded to text, for providers that take text only (through
    litellm: Cohere and Gemini refuse ids in litellm itself, which read as the deployment
    failing, a 502 counted by its breaker; others embed the ids' digits). LangChain's
    `OpenAIEmbeddings` sends ids by default, tiktoken's for the model name the client asked
    for; the gateway's tokenizer picks the same encoding for embedding models (cl100k_base)."""
    value = body.get("input")
    if not isinstance(value, list) or not value:
        return body
    if all(_ids(x) for x in value):
        texts = [_text(x, body, f"input[{i}]") for i, x in enumerate(value)]
    elif _ids(value):
        texts = [_text(value, body, "input")]
    else:
        return body
    return {**body, "input": texts}


def _ids(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(x, int) and not isinstance(x, bool) for x in value)
    )


def _text(ids: list[int], body: Json, param: str) -> str:
    encoding = encoding_for(str(body.get("model") or ""))
    if any(i < 0 or i >= encoding.n_vocab for i in ids):
        raise InvalidRequest(
            f"'{param}' holds a token id outside the {encoding.name} vocabulary.", param=param
        )
    try:
        return str(encoding.decode(ids))
    except Exception:  # an id in the range that the encoding leaves unassigned
        raise InvalidRequest(f"'{param}' holds an invalid token id.", param=param) from None


def in_requested_format(body: Json, out: Json) -> Json:
    """`out` (an embeddings response) with each vector encoded as `body` asked: floats become
    base64 when base64 was asked for, base64 becomes floats otherwise. Anything else (integer
    vectors of another format, a malformed item) is left as the upstream sent it. Raises
    `InvalidRequest` when the vectors are not of the size `body["dimensions"]` asked for."""
    _check_dimensions(body.get("dimensions"), out)
    wants_base64 = body.get("encoding_format") == "base64"
    for item in out.get("data") or ():
        if not isinstance(item, dict):
            continue
        vector = item.get("embedding")
        if wants_base64 and isinstance(vector, list) and _numbers(vector):
            try:
                packed = struct.pack(f"<{len(vector)}f", *vector)
            except (struct.error, OverflowError):  # past float32's range: not a float32 vector
                continue
            item["embedding"] = base64.b64encode(packed).decode()
        elif not wants_base64 and isinstance(vector, str):
            decoded = _decoded(vector)
            if decoded is not None:
                item["embedding"] = decoded
    return out


def _check_dimensions(want: Any, out: Json) -> None:
    if not isinstance(want, int) or isinstance(want, bool):
        return
    for item in out.get("data") or ():
        size = _size(item.get("embedding")) if isinstance(item, dict) else None
        if size is not None and size != want:
            raise InvalidRequest(
                f"This model's deployment does not support 'dimensions': it answered "
                f"{size}-dimensional vectors for {want}; send the request without it or use a "
                "model that supports it.",
                param="dimensions",
                code="unsupported_parameter",
            )


def _size(vector: Any) -> int | None:
    if isinstance(vector, list):
        return len(vector)
    if isinstance(vector, str):
        decoded = _decoded(vector)
        return None if decoded is None else len(decoded)
    return None


def _numbers(vector: list[Any]) -> bool:
    return all(isinstance(x, float | int) and not isinstance(x, bool) for x in vector)


def _decoded(text: str) -> list[float] | None:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) % 4:
        return None
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))
