"""Prices in USD per million tokens, exact (Decimal): from the config, else litellm's price map."""

from __future__ import annotations

import os
import re
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
    # Long-context prices (Gemini 2.5 Pro and Claude Sonnet 4 above 200k prompt tokens,
    # GPT-5.4 above 272k): (threshold, price), ascending. A request whose prompt has more
    # tokens than a threshold pays that price for every token, its answer's too.
    long_context: tuple[tuple[int, Price], ...] = ()
    # USD per web search by the search context size asked ("low", "medium", "high"): OpenAI's
    # search models, Anthropic's web search tool, Gemini's grounding, Perplexity's request fee
    web_search_usd: tuple[tuple[str, Decimal], ...] = ()
    web_search_per_prompt: bool = False  # Gemini 2.x: one charge a grounded prompt
    # reasoning tokens (part of the completion) where priced apart from the answer's: Alibaba's
    # Qwen in thinking mode ($4 per 1M where its answers are $1.20), Perplexity's deep research
    reasoning_output_per_mtok: Decimal | None = None
    # Perplexity's citation tokens (on top of the prompt: the sources its answer read)
    citation_input_per_mtok: Decimal | None = None

    def for_tier(self, tier: str | None) -> Price:
        """The price of the named service tier, else this (standard) one."""
        if tier is not None:
            for name, price in self.tiers:
                if name == tier:
                    return price
        return self

    def long_context_tier(self, prompt_tokens: int) -> tuple[int, Price] | None:
        """The long-context (threshold, price) a prompt of this many tokens is billed at, if
        any: the highest threshold it is longer than (the provider counts every prompt token,
        cached ones too)."""
        chosen = None
        for above, price in self.long_context:
            if prompt_tokens > above:
                chosen = (above, price)
        return chosen

    def at_prompt(self, prompt_tokens: int) -> Price:
        """The price a request with a prompt of this many tokens is billed at."""
        tier = self.long_context_tier(prompt_tokens) if self.long_context else None
        return self if tier is None else tier[1]

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
        web_searches: int = 0,
        web_search_size: str | None = None,
        reasoning_tokens: int = 0,
        citation_tokens: int = 0,
    ) -> Decimal:
        """`prompt_tokens` counts every prompt token once; `cached_tokens` (read from the
        provider's prompt cache) and `cache_write_tokens` (written to it) are parts of it, and
        `cache_write_1h_tokens` (written to the 1-hour cache) are part of the written ones.
        Audio tokens (OpenAI's audio models: 16x-33x the text price) are parts of the prompt and
        the completion, priced at the audio prices where there are some. A prompt above a
        long-context threshold bills everything at that threshold's prices. Web searches are
        billed apiece, at the price of the search context size asked (medium if none).
        Reasoning tokens are part of the completion; citation tokens are not of the prompt."""
        tokens = self.at_prompt(prompt_tokens)._cost_usd(
            prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens,
            cache_write_1h_tokens, audio_prompt_tokens, audio_completion_tokens,
            reasoning_tokens, citation_tokens,
        )  # fmt: skip
        if web_searches <= 0 or not self.web_search_usd:
            return tokens
        return tokens + self.web_search_cost_usd(web_searches, web_search_size)

    def web_search_cost_usd(self, searches: int, size: str | None = None) -> Decimal:
        """What `searches` web searches cost at the search context `size` (else medium)."""
        prices = dict(self.web_search_usd)
        each = prices.get(size or "medium") or prices.get("medium") or max(prices.values())
        return (1 if self.web_search_per_prompt else searches) * each

    def _cost_usd(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int,
        cache_write_tokens: int,
        cache_write_1h_tokens: int,
        audio_prompt_tokens: int,
        audio_completion_tokens: int,
        reasoning_tokens: int = 0,
        citation_tokens: int = 0,
    ) -> Decimal:
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
        if reasoning_tokens and self.reasoning_output_per_mtok is not None:
            thought = min(max(reasoning_tokens, 0), completion_tokens)
            total += thought * (self.reasoning_output_per_mtok - self.output_per_mtok)
        if citation_tokens > 0 and self.citation_input_per_mtok is not None:
            total += citation_tokens * self.citation_input_per_mtok
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
        entry = _lookup_litellm(cfg.provider, cfg.served_model, cfg.api_base)
        source = "unknown" if entry is None else "litellm"
        entry = None if entry is None else _first_range_as_base(entry)
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
        tiers = _tier_prices(entry, written, hour)
    # what every tier (service or long-context) shares, as it prices text tokens alone: the
    # deployment's audio prices (not its text's) and its web searches
    extras: dict[str, Any] = {
        "audio_input_per_mtok": _pick(
            cfg.audio_input_cost_per_mtok, entry, "input_cost_per_audio_token"
        ),
        "audio_output_per_mtok": _pick(
            cfg.audio_output_cost_per_mtok, entry, "output_cost_per_audio_token"
        ),
        **_web_search_prices(cfg, entry),
        "citation_input_per_mtok": _pick(None, entry, "citation_cost_per_token"),
    }
    tiers = _configured_tiers(cfg, tiers, written, hour)
    price = Price(
        _pick(cfg.input_cost_per_mtok, entry, "input_cost_per_token") or ZERO,
        _pick(cfg.output_cost_per_mtok, entry, "output_cost_per_token") or ZERO,
        _cached_price(cfg, entry),
        written,
        tiers,
        hour,
        reasoning_output_per_mtok=_pick(None, entry, "output_cost_per_reasoning_token"),
    )
    found = long_context_prices(entry, price) if litellm_priced and entry is not None else ()
    longer = dict(found)
    for tier in cfg.long_context_prices:
        longer[tier.above_prompt_tokens] = _scaled_like(
            price,
            Price(
                tier.input_cost_per_mtok,
                tier.output_cost_per_mtok,
                tier.cached_input_cost_per_mtok,
                tier.cache_write_input_cost_per_mtok,
                cache_write_1h_input_per_mtok=tier.cache_write_1h_input_cost_per_mtok,
            ),
        )
    price = replace(price, long_context=tuple(sorted(longer.items())))
    return _with_extras(price, extras), source


def _with_extras(price: Price, extras: dict[str, Any]) -> Price:
    """`price`, its service tiers' and its long-context prices with `extras` set."""
    return replace(
        price,
        tiers=tuple((name, _with_extras(p, extras)) for name, p in price.tiers),
        long_context=tuple((above, _with_extras(p, extras)) for above, p in price.long_context),
        **extras,
    )


def _scaled_like(base: Price, long: Price) -> Price:
    """A long-context price's cache prices where it names none: the base's, scaled as the
    input price is (providers price a cache read or write as a share of the input price,
    and that share holds above the threshold: Anthropic's 1-hour writes, 2x input, are $12
    per 1M above 200k tokens where litellm lists no figure)."""
    ratio = long.input_per_mtok / base.input_per_mtok if base.input_per_mtok else None
    out_ratio = long.output_per_mtok / base.output_per_mtok if base.output_per_mtok else None

    def scaled(
        own: Decimal | None, at_base: Decimal | None, by: Decimal | None = ratio
    ) -> Decimal | None:
        if own is not None or at_base is None or by is None:
            return own
        return _plain(at_base * by)

    return replace(
        long,
        cached_input_per_mtok=scaled(long.cached_input_per_mtok, base.cached_input_per_mtok),
        cache_write_input_per_mtok=scaled(
            long.cache_write_input_per_mtok, base.cache_write_input_per_mtok
        ),
        cache_write_1h_input_per_mtok=scaled(
            long.cache_write_1h_input_per_mtok, base.cache_write_1h_input_per_mtok
        ),
        # a reasoning price, as the output price is
        reasoning_output_per_mtok=scaled(
            long.reasoning_output_per_mtok, base.reasoning_output_per_mtok, out_ratio
        ),
    )


# litellm's long-context keys: `input_cost_per_token_above_200k_tokens` (`_128k`, `_272k`...)
_ABOVE = re.compile(r"input_cost_per_token_above_(\d+)(k?)_tokens")
# providers that bill the higher price from the threshold itself, not past it (as litellm)
_INCLUSIVE_THRESHOLDS = frozenset({"xai"})


def long_context_prices(
    entry: dict[str, Any], base: Price, tier: str | None = None
) -> tuple[tuple[int, Price], ...]:
    """litellm's long-context prices for `base` (the standard price, or a service tier's when
    `tier` names it), as litellm's cost calculator applies them: the threshold keys
    `*_above_<N>k_tokens` (a tier's own `*_above_<N>k_tokens_<tier>` first), or a
    `tiered_pricing` table of ranges (Alibaba's, Volcengine's). A price a tier does not list
    is the base's: the output price as it is, cache prices scaled (`_scaled_like`)."""
    inclusive = entry.get("litellm_provider") in _INCLUSIVE_THRESHOLDS
    out: dict[int, Price] = {}
    for key in entry:
        match = _ABOVE.fullmatch(key)
        if match is None:
            continue
        size = f"{match[1]}{match[2]}"

        def rate(name: str, size: str = size) -> Decimal | None:
            standard = entry.get(f"{name}_above_{size}_tokens")
            own = entry.get(f"{name}_above_{size}_tokens_{tier}") if tier else standard
            if own is not None or standard is None:
                return None if own is None else _per_mtok(own)
            # a service tier whose long-context price litellm does not list: the standard
            # one in the tier's proportion (gpt-5.4 priority: 2x its input above 272k, as the
            # standard tier's; litellm's own fallback billed it below priority's base price)
            at_tier, at_standard = entry.get(f"{name}_{tier}"), entry.get(name)
            if at_tier is None or not at_standard:
                return _per_mtok(standard)
            return _plain(_per_mtok(standard) * _per_mtok(at_tier) / _per_mtok(at_standard))

        inp = rate("input_cost_per_token")
        if inp is None:
            continue
        above = int(match[1]) * (1000 if match[2] else 1) - (1 if inclusive else 0)
        out[above] = _long_price(
            base, inp, rate("output_cost_per_token"), rate("cache_read_input_token_cost"),
            rate("cache_creation_input_token_cost"),
            rate("cache_creation_input_token_cost_above_1hr"),
        )  # fmt: skip
    table = entry.get("tiered_pricing") if tier is None else None
    for row in table if isinstance(table, list) else ():
        span = row.get("range") if isinstance(row, dict) else None
        if not (isinstance(span, list) and len(span) == 2 and row.get("input_cost_per_token")):
            continue
        if span[0] and float(span[0]) > 0:  # the first range is the base price
            got = {k: _per_mtok(v) for k, v in row.items() if k != "range" and v is not None}
            out[int(float(span[0]))] = _long_price(
                base, got["input_cost_per_token"], got.get("output_cost_per_token"),
                got.get("cache_read_input_token_cost"), got.get("cache_creation_input_token_cost"),
                None, got.get("output_cost_per_reasoning_token"),
            )  # fmt: skip
    return tuple(sorted(out.items()))


def _first_range_as_base(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry whose `tiered_pricing` table's first range (from 0 tokens) gives the prices it
    does not list itself (Alibaba's qwen3-coder-plus has only the table)."""
    table = entry.get("tiered_pricing")
    first = next(
        (
            row
            for row in (table if isinstance(table, list) else ())
            if isinstance(row, dict)
            and isinstance(row.get("range"), list)
            and len(row["range"]) == 2
            and not row["range"][0]
        ),
        None,
    )
    if first is None:
        return entry
    merged = dict(entry)
    for key, value in first.items():
        if key != "range" and merged.get(key) is None:
            merged[key] = value
    return merged


def _long_price(
    base: Price,
    inp: Decimal,
    outp: Decimal | None,
    cached: Decimal | None,
    written: Decimal | None,
    hour: Decimal | None,
    reasoning: Decimal | None = None,
) -> Price:
    long = Price(
        inp,
        base.output_per_mtok if outp is None else outp,
        cached,
        written,
        cache_write_1h_input_per_mtok=hour,
        reasoning_output_per_mtok=reasoning,
    )
    return _scaled_like(base, long)


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
        out.append((tier, replace(price, long_context=long_context_prices(entry, price, tier))))
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
    return _plain(Decimal(str(value)) * MILLION)


def _plain(value: Decimal) -> Decimal:
    """`value` without trailing zeros and without an exponent: normalize() alone made $10
    `1E+1`, which /admin/deployments, the dashboard and route explain printed as such."""
    value = value.normalize()
    return value.quantize(Decimal(1)) if value.as_tuple().exponent > 0 else value  # type: ignore[operator]


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
