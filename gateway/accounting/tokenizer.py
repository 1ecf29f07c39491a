"""Token counting with tiktoken, used only when the upstream reports no usage.

tiktoken downloads encodings on first use, which must never happen here: litellm ships
`cl100k_base` and `o200k_base`, so we point `TIKTOKEN_CACHE_DIR` at its copy before loading.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

# Per-message framing tokens in OpenAI's chat format (cl100k/o200k families).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


def _point_tiktoken_at_litellm() -> None:
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        return
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return
    root = Path(next(iter(spec.submodule_search_locations)))
    tokenizers = root / "litellm_core_utils" / "tokenizers"
    if tokenizers.is_dir():
        os.environ["TIKTOKEN_CACHE_DIR"] = str(tokenizers)


@lru_cache(maxsize=4)
def encoding_for(model: str) -> Any:
    _point_tiktoken_at_litellm()
    import tiktoken

    name = "o200k_base" if _is_o200k(model) else "cl100k_base"
    return tiktoken.get_encoding(name)


def _is_o200k(model: str) -> bool:
    m = model.lower()
    return any(tag in m for tag in ("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4"))


def count_text(text: str, model: str = "") -> int:
    if not text:
        return 0
    return len(encoding_for(model).encode(text, disallowed_special=()))


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return orjson.dumps(content).decode()


def count_messages(messages: list[Any], model: str = "", tools: Any = None) -> int:
    """Prompt tokens of a chat request, the way OpenAI counts them (close, not byte-exact)."""
    total = 0
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        total += TOKENS_PER_MESSAGE
        total += count_text(_content_text(msg.get("content")), model)
        if msg.get("name"):
            total += 1 + count_text(str(msg["name"]), model)
        if msg.get("tool_calls"):
            total += count_text(orjson.dumps(msg["tool_calls"]).decode(), model)
    if tools:
        total += count_text(orjson.dumps(tools).decode(), model)
    return total + TOKENS_PER_REPLY


def count_prompt(body: dict[str, Any], model: str = "") -> int:
    """Prompt tokens of a chat or completions body."""
    if "messages" in body and isinstance(body["messages"], list):
        return count_messages(body["messages"], model, body.get("tools"))
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return count_text(prompt, model)
    if isinstance(prompt, list):
        return sum(_count_item(p, model) for p in prompt)
    return 0


def _count_item(item: Any, model: str) -> int:
    """One element of a prompt array: a string, a token id, or an array of token ids."""
    if isinstance(item, str):
        return count_text(item, model)
    if isinstance(item, list):
        return len(item)
    return 1 if isinstance(item, int) else 0


# What a budget's prompt ceiling counts for an image part: OpenAI bills a high-detail image up
# to 1,445 tokens on gpt-4o (85 + 170 per 512 px tile), a patch-priced model ~1,536 x its
# multiplier, Anthropic ~1,600 at most; its size is unknown here without decoding it.
IMAGE_TOKENS_ESTIMATE = 1536

# Audio in a prompt: OpenAI bills ~10 tokens a second (gpt-4o audio, realtime). A WAV says its
# length in its header; otherwise (mp3) the data is taken at 8 kbit/s, the lowest bitrate an
# encoder writes: 1,000 bytes, ~1,333 base64 characters, a second.
AUDIO_TOKENS_PER_S = 10
AUDIO_B64_CHARS_PER_TOKEN = 128


def audio_tokens_ceiling(part: dict[str, Any]) -> int:
    """The most tokens an `input_audio` part can be billed as, from its base64 data."""
    audio = part.get("input_audio")
    data = audio.get("data") if isinstance(audio, dict) else None
    if not isinstance(data, str) or not data:
        return 0
    seconds = _wav_seconds(data)
    if seconds is not None:
        return math.ceil(seconds * AUDIO_TOKENS_PER_S) + 1
    return len(data) // AUDIO_B64_CHARS_PER_TOKEN + 1


def _wav_seconds(data: str) -> float | None:
    """A RIFF/WAVE file's length from its header (byte rate at offset 28), if it is one."""
    try:
        head = base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4))
    except (ValueError, binascii.Error):
        return None
    if len(head) < 32 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    byte_rate = int.from_bytes(head[28:32], "little")
    if byte_rate < 1000:  # below 8 kbit/s: not a header to trust
        return None
    return (len(data) * 3 / 4) / byte_rate


def _text_chars(text: str, ceiling: bool) -> int:
    """Characters of `text` as an estimate counts them (~4 to a token). English averages
    ~4.5 characters a token, but a CJK, Devanagari or Thai character is 1-1.5 tokens and an
    emoji 2 or more: for a ceiling, each byte past a character's first in UTF-8 counts 2.5
    characters more (cl100k within ~0.8-1.6x of the real count in every script tried, o200k
    up to ~3x above it)."""
    if not ceiling or text.isascii():  # isascii is O(1) in CPython
        return len(text)
    extra = len(text.encode("utf-8", "surrogatepass")) - len(text)
    return len(text) + 5 * extra // 2


def _content_chars(content: Any, ceiling: bool) -> int:
    """A message's content: text by its characters; for a ceiling, an image as a large one and
    a file by its inline data (what is billed is unknown without parsing it)."""
    if isinstance(content, str):
        return _text_chars(content, ceiling)
    if not ceiling or not isinstance(content, list):
        return 0 if content is None else len(_content_text(content))
    chars = 0
    for part in content:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            chars += _text_chars(part["text"], ceiling)
        elif part.get("type") in ("image_url", "input_image", "image"):
            chars += 4 * IMAGE_TOKENS_ESTIMATE
        elif part.get("type") == "input_audio":
            chars += 4 * audio_tokens_ceiling(part)
        elif isinstance(part.get("file"), dict):
            data = part["file"].get("file_data")
            chars += len(data) if isinstance(data, str) else 0
    return chars


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """A fast estimate for rate limits and routing: ~4 characters a token.

    Tokenising every prompt on the hot path would cost more than the gateway's whole budget;
    the exact count comes from the upstream's usage block afterwards. It can be far below that
    count (images count nothing, a CJK character a quarter token): a TPM charge is corrected
    to the real count afterwards, and a budget reserves on `prompt_tokens_ceiling`.
    """
    return _estimate(body, ceiling=False)


def prompt_tokens_ceiling(body: dict[str, Any]) -> int:
    """A fast estimate rarely below what the upstream bills, for budget reservations: every
    request admitted beside others overspends a budget by what its cost outgrows its
    reservation. Characters outside ASCII count by their UTF-8 bytes, an image as
    IMAGE_TOKENS_ESTIMATE. Never for a refusal of its own: it can be ~3x high."""
    return _estimate(body, ceiling=True)


def _estimate(body: dict[str, Any], ceiling: bool) -> int:
    chars = 0
    if isinstance(body.get("messages"), list):
        for msg in body["messages"]:
            if isinstance(msg, dict):
                chars += _content_chars(msg.get("content"), ceiling) + 16
    for text in (body.get("prompt"), body.get("input")):
        if isinstance(text, str):
            chars += _text_chars(text, ceiling)
        elif isinstance(text, list):
            for p in text:  # strings, token ids or arrays of them (a token is ~4 characters)
                tokens = len(p) if isinstance(p, list) else 1
                chars += _text_chars(p, ceiling) if isinstance(p, str) else 4 * tokens
    if body.get("tools"):
        chars += len(orjson.dumps(body["tools"]))
    return chars // 4 + 8
