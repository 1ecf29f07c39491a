"""A refused tenant flag says its range in plain digits (hunt11 h117)."""

from __future__ import annotations

import pytest

from gateway.accounting.tenant_flags import check_flags
from gateway.errors import InvalidRequest


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("max_concurrent_requests", 99_999_999_999, "between 1 and 1000000;"),
        ("cache_ttl_s", 0, "between 1 and 2592000;"),
        ("cache_max_entries", 0, "between 1 and 10000000;"),
        ("cache_threshold", 1.5, "between 0 and 1;"),
    ],
)
def test_a_refused_flag_says_its_range_in_plain_digits(flag: str, value: object, said: str) -> None:
    """`tenant update --max-concurrent 99999999999` read "between 1 and 1e+06"."""
    with pytest.raises(InvalidRequest) as refused:
        check_flags({flag: value})
    assert said in str(refused.value.message), refused.value.message
