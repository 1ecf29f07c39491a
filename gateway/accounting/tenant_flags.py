"""Tenant flags: checked when an admin sets them, so no value can break a tenant's requests.

Every flag the gateway reads is listed here with what it accepts; a wrong type or range is a
400 that names the flag (`flags.cache_ttl_s`). Unknown flags are kept (operators may tag
tenants), but they do nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from gateway.compression.options import MAX_RATIO, MODES
from gateway.errors import InvalidRequest

Check = Callable[[Any], str | None]  # the problem with a value, or None


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _number(lo: float, hi: float, *, whole: bool = False) -> Check:
    def check(value: Any) -> str | None:
        ok = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and lo <= value <= hi
            and (not whole or float(value).is_integer())
        )
        kind = "a whole number" if whole else "a number"
        return None if ok else f"must be {kind} between {_plain(lo)} and {_plain(hi)}"

    return check


def _plain(x: float) -> str:
    """1000000, not 1e+06 (`:g`)."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _names(allowed: frozenset[str] | None = None) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            return "must be a list of names"
        if allowed is not None and not set(value) <= allowed:
            return f"may only contain {sorted(allowed)}"
        return None

    return check


def _one_of(options: tuple[str, ...]) -> Check:
    def check(value: Any) -> str | None:
        ok = isinstance(value, str) and value.lower() in options
        return None if ok else f"must be one of {list(options)}"

    return check


FLAGS: dict[str, Check] = {
    "models": _names(),
    "auto_models": _names(),
    "cache": _bool,
    "cache_semantic": _bool,
    "cache_threshold": _number(0, 1),
    "cache_min_similarity": _number(0, 1),
    "cache_ttl_s": _number(1, 30 * 86_400, whole=True),
    "cache_max_entries": _number(1, 10_000_000, whole=True),
    "cache_max_temperature": _number(0, 2),
    "cache_unset_temperature": _bool,
    "cache_tool_calls": _bool,
    "cache_multi_choice": _bool,
    "compression": _one_of(tuple(MODES)),
    "compression_ratio": _number(1, MAX_RATIO),
    "compression_allow": _names(frozenset({"system", "last_user", "code"})),
    "compression_min_prompt_tokens": _number(0, 10_000_000, whole=True),
    "compression_min_saved_usd": _number(0, 1_000_000),
    "max_concurrent_requests": _number(1, 1_000_000, whole=True),
}


def check_flags(flags: Any) -> dict[str, Any]:
    if not isinstance(flags, dict):
        raise InvalidRequest("'flags' must be a JSON object.", param="flags")
    for name, value in flags.items():
        check = FLAGS.get(name)
        problem = check(value) if check is not None and value is not None else None
        if problem is not None:
            raise InvalidRequest(
                f"Tenant flag {name!r} {problem}; got {value!r}.", param=f"flags.{name}"
            )
    return flags


def misspelt_flags(flags: dict[str, Any]) -> list[str]:
    """Unknown names that resemble a flag the gateway reads (`cach`: its cache stayed on, and
    nothing said so), each said with the flag it resembles; tags far from any are not."""
    import difflib

    said = []
    for name in flags:
        if name in FLAGS:
            continue
        close = difflib.get_close_matches(str(name), list(FLAGS), n=1, cutoff=0.75)
        if close:
            said.append(
                f"tenant flag {name!r} is not one the gateway reads (did you mean {close[0]!r}?); "
                "it is kept as a tag and does nothing"
            )
    return said
