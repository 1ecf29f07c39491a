"""A report window whose end is not after its start is a mistake, not an empty report (hunt12
h122): `since=2026-11-30&until=2026-11-01` (the ends swapped) answered 200 with no rows, which
reads as "nothing was spent"."""

from __future__ import annotations

import pytest

from tests.support.servers import GatewayServer

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("path", ["/admin/spend", "/admin/requests"])
@pytest.mark.parametrize(
    ("since", "until"),
    [
        ("2026-11-30", "2026-11-01"),  # swapped dates
        ("2026-11-30", "2026-11-29"),  # the 29th, whole, ends where the 30th begins
        ("2026-11-25T00:00:00+05:30", "2026-11-24T18:00:00Z"),  # the same day, offsets apart
        ("2026-11-25T08:00:00Z", "2026-11-25T08:00:00Z"),
    ],
)
def test_a_window_ending_before_it_starts_is_a_400(
    gateway: GatewayServer, path: str, since: str, until: str
) -> None:
    r = gateway.admin("GET", path, params={"since": since, "until": until})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "until" and error["type"] == "invalid_request_error"
    assert "after 'since'" in error["message"], error["message"]


def test_a_window_of_one_day_is_fine(gateway: GatewayServer) -> None:
    params = {"since": "2026-11-30", "until": "2026-11-30"}  # the 30th, whole
    for path in ("/admin/spend", "/admin/requests"):
        assert gateway.admin("GET", path, params=params).status_code == 200
