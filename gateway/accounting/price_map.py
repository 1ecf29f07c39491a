"""litellm's bundled price map, read into Prices: the entry of a deployment's model, its
service tiers, long-context prices and web search prices, as litellm's calculator reads them."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from decimal import Decimal
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from gateway.accounting.price import MILLION, ZERO, Price
from gateway.providers.names import litellm_name


def scaled_like(base: Price, long: Price) -> Price:
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
        return plain(at_base * by)

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
    is the base's: the output price as it is, cache prices scaled (`scaled_like`)."""
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
                return None if own is None else per_mtok(own)
            # a service tier whose long-context price litellm does not list: the standard
            # one in the tier's proportion (gpt-5.4 priority: 2x its input above 272k, as the
            # standard tier's; litellm's own fallback billed it below priority's base price)
            at_tier, at_standard = entry.get(f"{name}_{tier}"), entry.get(name)
            if at_tier is None or not at_standard:
                return per_mtok(standard)
            return plain(per_mtok(standard) * per_mtok(at_tier) / per_mtok(at_standard))

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
            got = {k: per_mtok(v) for k, v in row.items() if k != "range" and v is not None}
            out[int(float(span[0]))] = _long_price(
                base, got["input_cost_per_token"], got.get("output_cost_per_token"),
                got.get("cache_read_input_token_cost"), got.get("cache_creation_input_token_cost"),
                None, got.get("output_cost_per_reasoning_token"),
            )  # fmt: skip
    return tuple(sorted(out.items()))


def first_range_as_base(entry: dict[str, Any]) -> dict[str, Any]:
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
    return scaled_like(base, long)


SERVICE_TIERS = ("flex", "priority")


def tier_prices(
    entry: dict[str, Any], written: Decimal | None, hour: Decimal | None
) -> tuple[tuple[str, Price], ...]:
    """litellm's `input_cost_per_token_flex` etc.: a tier with both its prices listed (its
    cache writes and audio at its own prices where listed: gpt-5.6's writes on priority, twice
    the standard's; Gemini 3 Flash's audio on priority, $1.80 per 1M where standard is $1)."""
    out = []
    for tier in SERVICE_TIERS:
        inp, outp = (
            entry.get(f"input_cost_per_token_{tier}"),
            entry.get(f"output_cost_per_token_{tier}"),
        )
        if inp is None or outp is None:
            continue
        cached = entry.get(f"cache_read_input_token_cost_{tier}")
        writes = entry.get(f"cache_creation_input_token_cost_{tier}")
        heard = entry.get(f"input_cost_per_audio_token_{tier}")
        price = Price(
            per_mtok(inp),
            per_mtok(outp),
            per_mtok(cached) if cached is not None else None,
            written if writes is None else per_mtok(writes),
            cache_write_1h_input_per_mtok=hour,
            audio_input_per_mtok=per_mtok(heard) if heard is not None else None,
        )
        out.append((tier, replace(price, long_context=long_context_prices(entry, price, tier))))
    return tuple(out)


def per_mtok(value: Any) -> Decimal:
    if value is None:
        return ZERO
    # str() first: the map holds floats; Decimal(float) would carry binary noise.
    return plain(Decimal(str(value)) * MILLION)


def plain(value: Decimal) -> Decimal:
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


def lookup_litellm(provider: str, model: str, api_base: str | None = None) -> dict[str, Any] | None:
    cost_map = litellm_cost_map()
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
    return {name.lower(): entry for name, entry in litellm_cost_map().items()}


@lru_cache(maxsize=1)
def litellm_cost_map() -> dict[str, Any]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm  # heavy import: only when a price is not in the config

    return dict(litellm.model_cost)
