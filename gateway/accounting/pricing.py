"""Prices in USD per million tokens, exact (Decimal): from the config, else litellm's price map
(price_map.py); what a request asks that changes its price; dollars as the ledger writes them."""

from __future__ import annotations

from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from gateway.accounting.price import ZERO
from gateway.accounting.price import Price as Price  # where the stages import it from
from gateway.accounting.price_map import (
    first_range_as_base,
    long_context_prices,
    lookup_litellm,
    per_mtok,
    plain,
    scaled_like,
    tier_prices,
)
from gateway.settings import DeploymentConfig


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
    (`modalities` with "audio"): both priced far above text on OpenAI's audio models. (An
    image answer, `modalities` with "image": images_asked.)"""
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


def images_asked(body: dict[str, Any]) -> bool:
    """Whether a request asks for images in its answer (`modalities` with "image": Gemini's
    image models, whose image tokens cost 12x their text's)."""
    modalities = body.get("modalities")
    return isinstance(modalities, list) and "image" in modalities


WEB_SEARCH_SIZES = ("low", "medium", "high")


def web_search_asked(body: dict[str, Any]) -> tuple[int, str | None]:
    """The web searches a request may be billed for, at most, and the search context size it
    asks: `web_search_options` (OpenAI's search models, litellm's Gemini and Anthropic) is one;
    a web search tool (Anthropic's `web_search_*` with its `max_uses`, OpenAI's `web_search`,
    Gemini's `googleSearch`) as many as it allows (one when it does not say)."""
    options = body.get("web_search_options")
    size = options.get("search_context_size") if isinstance(options, dict) else None
    searches = 1 if isinstance(options, dict) else 0
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict):
            continue
        kind = tool.get("type")
        if (isinstance(kind, str) and kind.startswith("web_search")) or (
            "googleSearch" in tool or "google_search" in tool
        ):
            uses = tool.get("max_uses")
            searches += uses if isinstance(uses, int) and 0 < uses <= 100 else 1
            size = size or tool.get("search_context_size")
    return searches, size if isinstance(size, str) else None


def _web_search_prices(cfg: DeploymentConfig, entry: dict[str, Any] | None) -> dict[str, Any]:
    """A deployment's web search prices: the config's one price for every size, else litellm's
    `search_context_cost_per_query` (USD a search; per grounded prompt for Gemini 2.x, as
    litellm's `web_search_billing_unit` says, its default for Gemini)."""
    if cfg.web_search_usd_per_query is not None:
        each = cfg.web_search_usd_per_query
        return {"web_search_usd": tuple((size, each) for size in WEB_SEARCH_SIZES)}
    table = entry.get("search_context_cost_per_query") if entry is not None else None
    if not isinstance(table, dict) or entry is None:
        return {}
    prices = tuple(
        (size, Decimal(str(table[f"search_context_size_{size}"])))
        for size in WEB_SEARCH_SIZES
        if isinstance(table.get(f"search_context_size_{size}"), int | float)
        and table[f"search_context_size_{size}"] > 0
    )
    unit = entry.get("web_search_billing_unit")
    provider = str(entry.get("litellm_provider") or "")
    gemini = provider == "gemini" or provider.startswith("vertex_ai-language")
    return {
        "web_search_usd": prices,
        "web_search_per_prompt": unit == "per_prompt" or (unit is None and gemini),
    }


def resolve_price(cfg: DeploymentConfig) -> tuple[Price, str]:
    """Config overrides win; otherwise look the upstream model up in litellm's local price map
    (every price not configured, when the input and output prices are not both configured)."""
    if cfg.input_cost_per_mtok is not None and cfg.output_cost_per_mtok is not None:
        entry, source = None, "config"
    else:
        entry = lookup_litellm(cfg.provider, cfg.served_model, cfg.api_base)
        source = "unknown" if entry is None else "litellm"
        entry = None if entry is None else first_range_as_base(entry)
    written = _pick(cfg.cache_write_input_cost_per_mtok, entry, "cache_creation_input_token_cost")
    hour = _pick(
        cfg.cache_write_1h_input_cost_per_mtok, entry, "cache_creation_input_token_cost_above_1hr"
    )
    tiers: tuple[tuple[str, Price], ...] = ()
    # litellm's service tiers and long-context prices only beside its own standard price
    litellm_priced = (
        entry is not None and cfg.input_cost_per_mtok is None and cfg.output_cost_per_mtok is None
    )
    if litellm_priced and entry is not None:
        tiers = tier_prices(entry, written, hour)
    # what every tier (service or long-context) shares, as it prices text tokens alone: the
    # deployment's audio prices (not its text's) and its web searches
    extras: dict[str, Any] = {
        "audio_input_per_mtok": _pick(
            cfg.audio_input_cost_per_mtok, entry, "input_cost_per_audio_token"
        ),
        "audio_output_per_mtok": _pick(
            cfg.audio_output_cost_per_mtok, entry, "output_cost_per_audio_token"
        ),
        "image_input_per_mtok": _pick(
            cfg.image_input_cost_per_mtok, entry, "input_cost_per_image_token"
        ),
        "image_output_per_mtok": _pick(
            cfg.image_output_cost_per_mtok, entry, "output_cost_per_image_token"
        ),
        **_web_search_prices(cfg, entry),
        "citation_input_per_mtok": _pick(
            cfg.citation_input_cost_per_mtok, entry, "citation_cost_per_token"
        ),
    }
    tiers = _configured_tiers(cfg, tiers, written, hour)
    price = Price(
        _pick(cfg.input_cost_per_mtok, entry, "input_cost_per_token") or ZERO,
        _pick(cfg.output_cost_per_mtok, entry, "output_cost_per_token") or ZERO,
        _cached_price(cfg, entry),
        written,
        tiers,
        hour,
        reasoning_output_per_mtok=_pick(
            cfg.reasoning_output_cost_per_mtok, entry, "output_cost_per_reasoning_token"
        ),
    )
    found = long_context_prices(entry, price) if litellm_priced and entry is not None else ()
    longer = dict(found)
    for tier in cfg.long_context_prices:
        longer[tier.above_prompt_tokens] = scaled_like(
            price,
            Price(
                tier.input_cost_per_mtok,
                tier.output_cost_per_mtok,
                tier.cached_input_cost_per_mtok,
                tier.cache_write_input_cost_per_mtok,
                cache_write_1h_input_per_mtok=tier.cache_write_1h_input_cost_per_mtok,
            ),
        )
    long = tuple(sorted(longer.items()))
    # a configured service tier has no long-context prices of its own: the standard's apply
    # in its proportion (priority at 2x: 2x the long-context price too)
    tiers = tuple(
        (name, replace(t, long_context=tuple((a, _in_proportion(t, price, p)) for a, p in long)))
        if name in cfg.service_tier_prices
        else (name, t)
        for name, t in tiers
    )
    price = replace(price, tiers=tiers, long_context=long)
    return _with_extras(price, extras), source


def _in_proportion(tier: Price, standard: Price, long: Price) -> Price:
    """`tier`'s price above a threshold whose standard price is `long`: each of its prices
    times the ratio of `long`'s to `standard`'s (input for the prompt's, output for the
    answer's); `tier` itself where the standard price is free."""
    if not standard.input_per_mtok or not standard.output_per_mtok:
        return tier
    at_length = Price(
        plain(tier.input_per_mtok * long.input_per_mtok / standard.input_per_mtok),
        plain(tier.output_per_mtok * long.output_per_mtok / standard.output_per_mtok),
    )
    return scaled_like(tier, at_length)


def _with_extras(price: Price, extras: dict[str, Any]) -> Price:
    """`price`, its service tiers' and its long-context prices with `extras` set, but for a
    part's price a tier lists of its own (Gemini's priority audio)."""
    own = {k for k in _OWN_PRICES if getattr(price, k) is not None}
    return replace(
        price,
        tiers=tuple((name, _with_extras(p, extras)) for name, p in price.tiers),
        long_context=tuple((above, _with_extras(p, extras)) for above, p in price.long_context),
        **{k: v for k, v in extras.items() if k not in own},
    )


# a tier's own prices of a prompt's or an answer's parts, where litellm lists them
_OWN_PRICES = ("audio_input_per_mtok", "audio_output_per_mtok")


def _cached_price(cfg: DeploymentConfig, entry: dict[str, Any] | None) -> Decimal | None:
    """The price of prompt tokens read from the provider's cache. Some DeepSeek entries name
    it only as `input_cost_per_token_cache_hit` (a tenth of the input price), which litellm's
    own calculator never reads: deepseek-v3.2's cache hits were billed at the full price."""
    found = _pick(cfg.cached_input_cost_per_mtok, entry, "cache_read_input_token_cost")
    return found if found is not None else _pick(None, entry, "input_cost_per_token_cache_hit")


def _pick(configured: Decimal | None, entry: dict[str, Any] | None, key: str) -> Decimal | None:
    """The configured price, else litellm's (per token in its map) where it lists one."""
    if configured is not None or entry is None or entry.get(key) is None:
        return configured
    return per_mtok(entry[key])


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


LEDGER_PLACES = Decimal("1e-10")  # the ledger's money columns are NUMERIC(20,10)


def ledger_usd(value: Decimal) -> Decimal:
    """Dollars as the ledger stores them: 10 decimal places, a half rounded away from zero
    (as Postgres rounds NUMERIC), so the headers and the usage chunk say what the row says."""
    return value.quantize(LEDGER_PLACES, rounding=ROUND_HALF_UP)


def usd_text(value: Decimal | None) -> str:
    """Dollars as plain digits: never an exponent ("0E-10", "1E+2"), no trailing zeros."""
    return format(value.normalize(), "f") if value else "0"
