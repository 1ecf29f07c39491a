"""The dashboard's forms and filters take hostile input the way the admin API does: a 400 page
or a plain redirect, never a 500 and never a value the database cannot hold. Over HTTP (the
browser tests in tests/e2e cover the pages themselves)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import ADMIN_KEY, GatewayServer, MockUpstreamServer, mock_deployment

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gw(
    session_tmp: Path, pg_url: str, mock_upstream: MockUpstreamServer
) -> Iterator[GatewayServer]:
    g = GatewayServer(session_tmp, pg_url, [mock_deployment("dash-m", "dash-m", mock_upstream)])
    yield g
    g.stop()


@pytest.fixture
def signed_in(gw: GatewayServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.base, timeout=30, headers={"Origin": gw.base}) as c:
        page = c.get("/dashboard/login")
        token = re.search(r'name="login_token" value="([^"]+)"', page.text)
        assert token is not None
        r = c.post("/dashboard/login", data={"admin_key": ADMIN_KEY, "login_token": token[1]})
        assert r.status_code == 303, r.text[:300]
        yield c


def csrf(c: httpx.Client, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', c.get(path).text)
    assert found is not None
    return found[1]


@pytest.mark.parametrize("query", ["page=²", "page=٣", "status=³", "status=٥00", "model=a%00b"])
def test_odd_filters_are_ignored_not_a_500(signed_in: httpx.Client, query: str) -> None:
    assert signed_in.get(f"/dashboard/requests?{query}").status_code == 200
    export = signed_in.get(f"/dashboard/requests.csv?{query}")
    assert export.status_code == 200 and export.text.startswith("request_id,")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"budget_usd": "1e10"}, "below 10,000,000,000"),
        ({"budget_usd": "1e400"}, "below 10,000,000,000"),
        ({"budget_usd": "0.00000000001"}, "at most 10 decimals"),
        ({"rpm": "²"}, "whole number"),
        ({"tpm": "2147483648"}, "whole number"),
    ],
)
def test_bad_settings_are_a_400_page(
    gw: GatewayServer, signed_in: httpx.Client, fields: dict[str, str], message: str
) -> None:
    tid, _ = gw.new_tenant()
    path = f"/dashboard/tenants/{tid}"
    r = signed_in.post(
        path + "/settings",
        data={"budget_period": "monthly", "csrf_token": csrf(signed_in, path), **fields},
    )
    assert r.status_code == 400 and message in r.text
    assert gw.admin("GET", f"/admin/tenants/{tid}").json()["budget_usd"] is None


def test_the_largest_tpm_the_api_takes_is_saved(gw: GatewayServer, signed_in: httpx.Client) -> None:
    tid, _ = gw.new_tenant()
    path = f"/dashboard/tenants/{tid}"
    data = {"tpm": "2147483647", "budget_usd": "0", "budget_period": "monthly"}
    r = signed_in.post(path + "/settings", data={**data, "csrf_token": csrf(signed_in, path)})
    assert r.status_code == 303
    tenant = gw.admin("GET", f"/admin/tenants/{tid}").json()
    assert (tenant["tpm"], tenant["budget_usd"]) == (2147483647, "0")  # not "0E-10"


def test_nul_characters_are_refused_not_a_500(gw: GatewayServer, signed_in: httpx.Client) -> None:
    token = csrf(signed_in, "/dashboard/tenants")
    r = signed_in.post("/dashboard/tenants", data={"name": "a\x00b", "csrf_token": token})
    assert r.status_code == 303 and r.headers["location"].endswith("error=name")
    assert signed_in.get("/dashboard/tenants/a%00b").status_code == 404
    tid, _ = gw.new_tenant()
    path = f"/dashboard/tenants/{tid}"
    r = signed_in.post(
        path + "/keys", data={"name": "k\x00ey", "csrf_token": csrf(signed_in, path)}
    )
    assert r.status_code == 200
    assert [k["name"] for k in gw.admin("GET", f"/admin/tenants/{tid}/keys").json()["data"]][
        -1
    ] == "key"
    r = signed_in.post("/dashboard/keys/x%00y/revoke", data={"csrf_token": csrf(signed_in, path)})
    assert r.status_code == 404


def test_without_an_admin_key_the_sign_in_page_says_so_at_once(
    session_tmp: Path, pg_url: str, mock_upstream: MockUpstreamServer
) -> None:
    """It showed the sign-in form, and said the dashboard was disabled only once a key had been
    typed in and sent (hunt9 h1)."""
    g = GatewayServer(
        session_tmp,
        pg_url,
        [mock_deployment("dash-off", "dash-off", mock_upstream)],
        extra_env={"THRIFTGATE_ADMIN_KEY": ""},
    )
    try:
        page = httpx.get(g.base + "/dashboard/login", timeout=10)
        assert page.status_code == 403
        assert "The dashboard is disabled: set THRIFTGATE_ADMIN_KEY." in page.text
        assert 'name="admin_key"' not in page.text  # no form to type a key into
    finally:
        g.stop()


def test_keys_can_be_created_to_expire_and_say_when_they_stop(
    gw: GatewayServer, signed_in: httpx.Client
) -> None:
    tid, _ = gw.new_tenant()
    path = f"/dashboard/tenants/{tid}"
    r = signed_in.post(
        path + "/keys",
        data={"name": "ci", "expires_in_days": "30", "csrf_token": csrf(signed_in, path)},
    )
    assert r.status_code == 200 and 'id="new-key-value"' in r.text
    keys = gw.admin("GET", f"/admin/tenants/{tid}/keys").json()["data"]
    (made,) = [k for k in keys if k["name"] == "ci"]  # beside the key new_tenant made
    assert made["expires_at"] is not None
    graced = gw.new_tenant()  # a second tenant's key, revoked after a grace period
    key_id = gw.admin("GET", f"/admin/tenants/{graced[0]}/keys").json()["data"][0]["id"]
    gw.admin("DELETE", f"/admin/keys/{key_id}", params={"after_s": 3600})
    page = signed_in.get(path).text
    row = re.search(rf'<tr data-key="{made["id"]}" data-state="(\w+)"[^>]*>(.*?)</tr>', page, re.S)
    assert row is not None and row[1] == "expiring"
    assert made["expires_at"][:10] in row[2]
    assert "<th>Expires (UTC)</th>" in page  # times are UTC: an admin elsewhere must not guess
    other = signed_in.get(f"/dashboard/tenants/{graced[0]}").text
    assert f'data-key="{key_id}" data-state="revoking"' in other and "revoked from" in other
    assert re.search(r"revoked from \d{4}-\d\d-\d\d \d\d:\d\d UTC", other)
    bad = signed_in.post(
        path + "/keys", data={"expires_in_days": "soon", "csrf_token": csrf(signed_in, path)}
    )
    assert bad.status_code == 400 and "Expires in (days)" in bad.text
    assert len(gw.admin("GET", f"/admin/tenants/{tid}/keys").json()["data"]) == len(keys)
