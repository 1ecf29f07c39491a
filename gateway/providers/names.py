"""Provider names as people write them, and as litellm (its calls and its price map) spells them."""

from __future__ import annotations

_ALIASES = {
    "together": "together_ai",
    "fireworks": "fireworks_ai",
    "google": "gemini",
    "vertex": "vertex_ai",
    "grok": "xai",
}


def litellm_name(provider: str) -> str:
    return _ALIASES.get(provider, provider)
