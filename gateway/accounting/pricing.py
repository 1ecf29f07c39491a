"""Prices in USD per million tokens, exact (Decimal): from the config, else litellm's price map."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from gateway.providers.names import litellm_name
from gateway.settings import DeploymentConfig

MILLION = Decimal(1_000_000)
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Price:
    input_per_mtok: Decimal = ZERO
    output_per_mtok: Decimal = ZERO
    cached_input_per_mtok: Decimal | None = None  # provider prompt-cache discount, if any
    # prompt tokens written to the provider's prompt cache (Anthropic: 1.25x input), if any
    cache_write_input_per_mtok: Decimal | None = None
    # Prices of the provider's service tiers other than the standard one (OpenAI's "flex" at
    # half price, "priority" above it), by the tier's name as the upstream reports it.
    tiers: tuple[tuple[str, Price], ...] = ()
    # prompt tokens written to a 1-hour prompt cache (Anthropic: 2x input), if priced apart
    cache_write_1h_input_per_mtok: Decimal | None = None
    # audio tokens in the prompt and the answer (OpenAI's audio models), if priced apart
    audio_input_per_mtok: Decimal | None = None
    audio_output_per_mtok: Decimal | None = None

    def for_tier(self, tier: str | None) -> Price:
        """The price of the named service tier, else this (standard) one."""
        if tier is not None:
            for name, price in self.tiers:
                if name == tier:
                    return price
        return self

    def cost_usd(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
        *,
        audio_prompt_tokens: int = 0,
        audio_completion_tokens: int = 0,
    ) -> Decimal:
        """`prompt_tokens` counts every prompt token once; `cached_tokens` (read from the
        provider's prompt cache) and `cache_write_tokens` (written to it) are parts of it, and
        `cache_write_1h_tokens` (written to the 1-hour cache) are part of the written ones.
        Audio tokens (OpenAI's audio models: 16x-33x the text price) are parts of the prompt and
        the completion, priced at the audio prices where there are some."""
        if not cached_tokens and not cache_write_tokens:  # the router's estimates, most rows
            total = prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        else:
            total = self._prompt_cache_cost(
                prompt_tokens, cached_tokens, cache_write_tokens, cache_write_1h_tokens
            )
            total += completion_tokens * self.output_per_mtok
        if audio_prompt_tokens and self.audio_input_per_mtok is not None:
            heard = min(max(audio_prompt_tokens, 0), prompt_tokens)
            total += heard * (self.audio_input_per_mtok - self.input_per_mtok)
        if audio_completion_tokens and self.audio_output_per_mtok is not None:
            spoken = min(max(audio_completion_tokens, 0), completion_tokens)
            total += spoken * (self.audio_output_per_mtok - self.output_per_mtok)
        return total / MILLION

    def _prompt_cache_cost(
        self, prompt: int, cached_tokens: int, writes: int, hours: int
    ) -> Decimal:
        """The prompt's cost (per million) with tokens read from and written to the cache."""
        cached = min(max(cached_tokens, 0), prompt)
        written = min(max(writes, 0), prompt - cached)
        cached_price = (
            self.input_per_mtok
            if self.cached_input_per_mtok is None
            else self.cached_input_per_mtok
        )
        write_price = (
            self.input_per_mtok
            if self.cache_write_input_per_mtok is None
            else self.cache_write_input_per_mtok
        )
        hour = min(max(hours, 0), written)
        hour_price = (
            write_price
            if self.cache_write_1h_input_per_mtok is None
            else self.cache_write_1h_input_per_mtok
        )
        return (
            (prompt - cached - written) * self.input_per_mtok
            + cached * cached_price
            + (written - hour) * write_price
            + hour * hour_price
        )


def asks_hour_cache(body: dict[str, Any]) -> bool:
    """Whether a request marks anything for the provider's 1-hour prompt cache (Anthropic's
    `cache_control: {"type": "ephemeral", "ttl": "1h"}`, on a message, a content part, a tool
    or the system prompt), whose writes cost more than the 5-minute cache's."""

    def marked(item: Any) -> bool:
        mark = item.get("cache_control") if isinstance(item, dict) else None
        return isinstance(mark, dict) and mark.get("ttl") == "1h"

    for key in ("messages", "tools", "system"):
        items = body.get(key)
        if not isinstance(items, list):
            continue
        for item in items:
            if marked(item):
                return True
            parts = item.get("content") if isinstance(item, dict) else None
            if isinstance(parts, list) and any(marked(part) for part in parts):
                return True
    return False


def audio_asked(body: dict[str, Any]) -> tuple[bool, bool]:
    """Whether a request sends audio (an `input_audio` part) and asks for an audio answer
    (`modalities` with "audio"): both priced far above text on OpenAI's audio models."""
    modalities = body.get("modalities")
    speaks = isinstance(modalities, list) and "audio" in modalities
    messages = body.get("messages")
    hears = isinstance(messages, list) and any(
        isinstance(part, dict) and part.get("type") == "input_audio"
        for msg in messages
        if isinstance(msg, dict) and isinstance(msg.get("content"), list)
        for part in msg["content"]
    )
    return hears, speaks


def resolve_price(cfg: DeploymentConfig) -> tuple[Price, str]:
    """Config overrides win; otherwise look the upstream model up in litellm's local price map
    (every price not configured, when the input and output prices are not both configured)."""
    if cfg.input_cost_per_mtok is not None and cfg.output_cost_per_mtok is not None:
        entry, source = None, "config"
    else:
        entry = _lookup_litellm(cfg.provider, cfg.served_model, cfg.api_base)
        source = "unknown" if entry is None else "litellm"
    written = _pick(cfg.cache_write_input_cost_per_mtok, entry, "cache_creation_input_token_cost")
    hour = _pick(
        cfg.cache_write_1h_input_cost_per_mtok, entry, "cache_creation_input_token_cost_above_1hr"
    )
    tiers: tuple[tuple[str, Price], ...] = ()
    if entry is not None and cfg.input_cost_per_mtok is None and cfg.output_cost_per_mtok is None:
        tiers = _tier_prices(entry, written, hour)  # only beside litellm's own standard price
    heard = _pick(cfg.audio_input_cost_per_mtok, entry, "input_cost_per_audio_token")
    spoken = _pick(cfg.audio_output_cost_per_mtok, entry, "output_cost_per_audio_token")
    # a tier prices text; its audio tokens are the deployment's audio prices, not its text's
    tiers = tuple(
        (name, replace(tier, audio_input_per_mtok=heard, audio_output_per_mtok=spoken))
        for name, tier in _configured_tiers(cfg, tiers, written, hour)
    )
    price = Price(
        _pick(cfg.input_cost_per_mtok, entry, "input_cost_per_token") or ZERO,
        _pick(cfg.output_cost_per_mtok, entry, "output_cost_per_token") or ZERO,
        _pick(cfg.cached_input_cost_per_mtok, entry, "cache_read_input_token_cost"),
        written,
        tiers,
        hour,
        heard,
        spoken,
    )
    return price, source


def _pick(configured: Decimal | None, entry: dict[str, Any] | None, key: str) -> Decimal | None:
    """The configured price, else litellm's (per token in its map) where it lists one."""
    if configured is not None or entry is None or entry.get(key) is None:
        return configured
    return _per_mtok(entry[key])


def _configured_tiers(
    cfg: DeploymentConfig,
    found: tuple[tuple[str, Price], ...],
    written: Decimal | None,
    hour: Decimal | None,
) -> tuple[tuple[str, Price], ...]:
    """`found` (litellm's tiers) with the config's `service_tier_prices` over them."""
    tiers = dict(found)
    for name, tier in cfg.service_tier_prices.items():
        tiers[name] = Price(
            tier.input_cost_per_mtok,
            tier.output_cost_per_mtok,
            tier.cached_input_cost_per_mtok,
            written,
            cache_write_1h_input_per_mtok=hour,
        )
    return tuple(tiers.items())


SERVICE_TIERS = ("flex", "priority")


def _tier_prices(
    entry: dict[str, Any], written: Decimal | None, hour: Decimal | None
) -> tuple[tuple[str, Price], ...]:
    """litellm's `input_cost_per_token_flex` etc.: a tier with both its prices listed."""
    out = []
    for tier in SERVICE_TIERS:
        inp, outp = (
            entry.get(f"input_cost_per_token_{tier}"),
            entry.get(f"output_cost_per_token_{tier}"),
        )
        if inp is None or outp is None:
            continue
        cached = entry.get(f"cache_read_input_token_cost_{tier}")
        price = Price(
            _per_mtok(inp),
            _per_mtok(outp),
            _per_mtok(cached) if cached is not None else None,
            written,
            cache_write_1h_input_per_mtok=hour,
        )
        out.append((tier, price))
    return tuple(out)


LEDGER_PLACES = Decimal("1e-10")  # the ledger's money columns are NUMERIC(20,10)


def ledger_usd(value: Decimal) -> Decimal:
    """Dollars as the ledger stores them: 10 decimal places, a half rounded away from zero
    (as Postgres rounds NUMERIC), so the headers and the usage chunk say what the row says."""
    return value.quantize(LEDGER_PLACES, rounding=ROUND_HALF_UP)


def usd_text(value: Decimal | None) -> str:
    """Dollars as plain digits: never an exponent ("0E-10", "1E+2"), no trailing zeros."""
    return format(value.normalize(), "f") if value else "0"


def _per_mtok(value: Any) -> Decimal:
    if value is None:
        return ZERO
    # str() first: the map holds floats; Decimal(float) would carry binary noise.
    return (Decimal(str(value)) * MILLION).normalize()


# An OpenAI-compatible endpoint's host says whose prices apply.
_HOST_PROVIDERS = {
    "api.together.xyz": "together_ai",
    "api.together.ai": "together_ai",
    "api.groq.com": "groq",
    "api.fireworks.ai": "fireworks_ai",
    "api.deepseek.com": "deepseek",
    "api.mistral.ai": "mistral",
    "api.x.ai": "xai",
    "api.perplexity.ai": "perplexity",
    "api.deepinfra.com": "deepinfra",
    "api.cerebras.ai": "cerebras",
    "openrouter.ai": "openrouter",
    "generativelanguage.googleapis.com": "gemini",
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
}


def price_provider(provider: str, api_base: str | None) -> str | None:
    """The provider prefix of litellm's price map that applies to a deployment, if known."""
    if provider == "openai_compatible":
        host = urlsplit(api_base or "").hostname or ""
        return _HOST_PROVIDERS.get(host.lower())
    if provider == "local":
        return None
    return litellm_name(provider)


def _lookup_litellm(
    provider: str, model: str, api_base: str | None = None
) -> dict[str, Any] | None:
    cost_map = _litellm_cost_map()
    candidates = [model]
    prefix = price_provider(provider, api_base)
    if prefix is not None:
        candidates.insert(0, f"{prefix}/{model}")
    if "/" in model:
        candidates.append(model.split("/", 1)[1])
    for name in candidates:
        entry = cost_map.get(name)
        if entry is None:
            entry = _lowercase_cost_map().get(name.lower())
        if isinstance(entry, dict):
            return entry
    return None


@lru_cache(maxsize=1)
def _lowercase_cost_map() -> dict[str, Any]:
    return {name.lower(): entry for name, entry in _litellm_cost_map().items()}


@lru_cache(maxsize=1)
def _litellm_cost_map() -> dict[str, Any]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm  # heavy import: only when a price is not in the config

    return dict(litellm.model_cost)
