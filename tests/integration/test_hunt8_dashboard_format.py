"""Dollar amounts on the dashboard pages (hunt 8, h5).

A request to a cheap model costs a few millionths of a dollar: the request log, the tenants
table and the budget bar printed every such amount as "$0.0000", which reads as free (and a
cache hit, really free, is "$0.00" beside it). A negative saving (a fallback to a pricier
deployment) printed as "$-0.0012".
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.dashboard import views


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        ("0", "$0.00"),
        ("0.0000000000", "$0.00"),
        ("1234.5", "$1,234.50"),
        ("0.000123", "$0.0001"),  # four decimals from a ten-thousandth of a dollar up
        ("0.5", "$0.5000"),
        ("0.00000495", "$0.0000050"),  # two significant digits below that, never "$0.0000"
        ("0.0000456500", "$0.000046"),
        ("0.00009999", "$0.000100"),
        ("0.0000000001", "$0.00000000010"),
        ("-0.0012", "-$0.0012"),
        ("-1234.5", "-$1,234.50"),
        ("-0.0000045", "-$0.0000045"),
    ],
)
def test_usd_never_shows_a_paid_amount_as_zero(amount: str, text: str) -> None:
    assert views.usd(Decimal(amount)) == text


def test_usd_of_floats_and_none() -> None:
    assert views.usd(4.95e-06) == "$0.0000050"
    assert views.usd(None) == "n/a"
