"""Per-tenant cache policy (from `tenant.flags`) and per-request cache headers.

Tenant flags (all optional; documented in docs/notes/issue-5.md):

    cache                    bool   cache at all (default: the config's tenant_defaults.cache)
    cache_semantic           bool   serve semantic hits, not only exact ones (default true)
    cache_threshold          float  verifier score a semantic hit must reach (default 0.93)
    cache_min_similarity     float  cosine below which an entry is never a candidate (0.80)
    cache_ttl_s              int    default time to live of new entries (default 86400)
    cache_max_entries        int    entries kept for the tenant; oldest evicted first (10000)
    cache_max_temperature    float  highest temperature still cached (default 0)
    cache_unset_temperature  bool   cache requests that leave temperature unset (default true)
    cache_tool_calls         bool   cache conversations with tool calls/results (default false)
    cache_multi_choice       bool   cache requests with n > 1 (default false)

Request headers: `Cache-Control: no-cache` (skip the lookup, still store), `no-store`
(neither), and `x-thriftgate-cache-ttl: <seconds>` for the entry this request stores.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.cache.verifier import DEFAULT_MIN_COS, DEFAULT_SCORE_THRESHOLD
from gateway.errors import InvalidRequest

DEFAULT_TTL_S = 86_400
MAX_TTL_S = 30 * 86_400
DEFAULT_MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class CachePolicy:
    enabled: bool = True
    semantic: bool = True
    threshold: float = DEFAULT_SCORE_THRESHOLD
    min_similarity: float = DEFAULT_MIN_COS
    ttl_s: int = DEFAULT_TTL_S
    max_entries: int = DEFAULT_MAX_ENTRIES
    max_temperature: float = 0.0
    unset_temperature_ok: bool = True
    tool_calls_ok: bool = False
    multi_choice_ok: bool = False

    @classmethod
    def from_flags(cls, flags: dict[str, Any], *, enabled_default: bool = True) -> CachePolicy:
        d = cls()
        return cls(
            enabled=_bool(flags, "cache", enabled_default),
            semantic=_bool(flags, "cache_semantic", d.semantic),
            threshold=_num(flags, "cache_threshold", d.threshold, 0.0, 1.0),
            min_similarity=_num(flags, "cache_min_similarity", d.min_similarity, 0.0, 1.0),
            ttl_s=int(_num(flags, "cache_ttl_s", d.ttl_s, 1, MAX_TTL_S)),
            max_entries=int(_num(flags, "cache_max_entries", d.max_entries, 1, 10_000_000)),
            max_temperature=_num(flags, "cache_max_temperature", d.max_temperature, 0.0, 2.0),
            unset_temperature_ok=_bool(flags, "cache_unset_temperature", d.unset_temperature_ok),
            tool_calls_ok=_bool(flags, "cache_tool_calls", d.tool_calls_ok),
            multi_choice_ok=_bool(flags, "cache_multi_choice", d.multi_choice_ok),
        )


@dataclass(frozen=True, slots=True)
class RequestDirectives:
    lookup: bool = True
    store: bool = True
    ttl_s: int | None = None


_SECONDS = re.compile(r"[0-9]+")


def directives(headers: dict[str, str]) -> RequestDirectives:
    """Read `Cache-Control` and `x-thriftgate-cache-ttl` (headers are lower-cased)."""
    parts: dict[str, str] = {}
    for part in headers.get("cache-control", "").split(","):
        name, _, value = part.partition("=")
        parts[name.strip().lower()] = value.strip().strip('"')
    no_store = "no-store" in parts
    # `max-age=0`, as in HTTP: any stored answer is too old (the fresh one is still stored)
    max_age = parts.get("max-age", "")
    stale = _SECONDS.fullmatch(max_age) is not None and int(max_age) == 0
    no_cache = "no-cache" in parts or stale
    ttl: int | None = None
    raw = headers.get("x-thriftgate-cache-ttl")
    if raw is not None and raw.strip():
        if not _SECONDS.fullmatch(raw.strip()):  # int() also reads "1_000", "+5", "٥"
            raise InvalidRequest(
                "Header 'x-thriftgate-cache-ttl' must be a whole number of seconds.",
                code="invalid_header",
                param="x-thriftgate-cache-ttl",
            )
        ttl = int(raw.strip())
        if not 0 < ttl <= MAX_TTL_S:
            raise InvalidRequest(
                f"Header 'x-thriftgate-cache-ttl' must be between 1 and {MAX_TTL_S} seconds.",
                code="invalid_header",
                param="x-thriftgate-cache-ttl",
            )
    return RequestDirectives(lookup=not (no_cache or no_store), store=not no_store, ttl_s=ttl)


def _bool(flags: dict[str, Any], name: str, default: bool) -> bool:
    value = flags.get(name, default)
    return value if isinstance(value, bool) else default


def _num(flags: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = flags.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(min(max(value, lo), hi))
