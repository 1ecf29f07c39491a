"""Token counting with tiktoken, used only when the upstream reports no usage.

tiktoken downloads encodings on first use, which must never happen here: litellm ships
`cl100k_base` and `o200k_base`, so we point `TIKTOKEN_CACHE_DIR` at its copy before loading.
"""

from __future__ import annotations

import importlib.util
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


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """A fast upper-ish estimate for budgets/limits/routing: ~4 characters a token.

    Tokenising every prompt on the hot path would cost more than the gateway's whole budget;
    the exact count comes from the upstream's usage block afterwards.
    """
    chars = 0
    if isinstance(body.get("messages"), list):
        for msg in body["messages"]:
            if isinstance(msg, dict):
                c = msg.get("content")
                if isinstance(c, str):
                    chars += len(c)
                elif c is not None:
                    chars += len(_content_text(c))
                chars += 16
    for text in (body.get("prompt"), body.get("input")):
        if isinstance(text, str):
            chars += len(text)
        elif isinstance(text, list):
            for p in text:  # strings, token ids or arrays of them (a token is ~4 characters)
                tokens = len(p) if isinstance(p, list) else 1
                chars += len(p) if isinstance(p, str) else 4 * tokens
    if body.get("tools"):
        chars += len(orjson.dumps(body["tools"]))
    return chars // 4 + 8
