"""Per-tenant flags and per-request cache headers."""

from __future__ import annotations

import pytest

from gateway.cache.policy import CachePolicy, directives
from gateway.errors import InvalidRequest


def test_defaults_and_flags() -> None:
    assert CachePolicy.from_flags({}).enabled
    assert not CachePolicy.from_flags({}, enabled_default=False).enabled
    p = CachePolicy.from_flags(
        {"cache": True, "cache_semantic": False, "cache_threshold": 0.9, "cache_ttl_s": 60,
         "cache_max_entries": 5, "cache_max_temperature": 0.5, "cache_tool_calls": True}
    )  # fmt: skip
    assert (p.semantic, p.threshold, p.ttl_s, p.max_entries) == (False, 0.9, 60, 5)
    assert p.max_temperature == 0.5 and p.tool_calls_ok


def test_bad_flag_values_fall_back_or_clamp() -> None:
    p = CachePolicy.from_flags({"cache": "yes", "cache_threshold": 7, "cache_ttl_s": "x"})
    assert p.enabled is True and p.threshold == 1.0 and p.ttl_s == CachePolicy().ttl_s


def test_cache_control_directives() -> None:
    assert directives({}) == directives({"cache-control": ""})
    d = directives({"cache-control": "no-cache"})
    assert (d.lookup, d.store) == (False, True)
    d = directives({"cache-control": "max-age=0, No-Store"})
    assert (d.lookup, d.store) == (False, False)
    assert directives({"x-thriftgate-cache-ttl": "30"}).ttl_s == 30


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5", "99999999999"])
def test_bad_ttl_header_is_a_400(value: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        directives({"x-thriftgate-cache-ttl": value})
    assert err.value.status_code == 400 and err.value.param == "x-thriftgate-cache-ttl"


@pytest.mark.parametrize("value", ["max-age=0", "MAX-AGE = 0", "private, max-age=00"])
def test_max_age_zero_asks_for_a_fresh_answer(value: str) -> None:
    # as in HTTP: a stored answer of any age is too old; the fresh one is still stored
    d = directives({"cache-control": value})
    assert (d.lookup, d.store) == (False, True)


def test_a_positive_max_age_does_not_bypass() -> None:
    d = directives({"cache-control": "max-age=60"})
    assert (d.lookup, d.store) == (True, True)


@pytest.mark.parametrize("value", ["1_000", "+30", "٣٠", " 3 0 "])
def test_ttl_header_takes_ascii_digits_only(value: str) -> None:
    # Python's int() reads "1_000", "+30" and Arabic-Indic digits; the header means seconds
    with pytest.raises(InvalidRequest) as err:
        directives({"x-thriftgate-cache-ttl": value})
    assert err.value.param == "x-thriftgate-cache-ttl"
