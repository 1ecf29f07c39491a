"""A tenant's cap on requests in flight (`tenant update --max-concurrent`, the flag
`max_concurrent_requests`) is seen and set on its dashboard page beside RPM and TPM: the page's
"Budget and limits" showed neither the cap nor a way to set it."""

from __future__ import annotations

import re

from tests.support.servers import GatewayServer, dashboard_session


def csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None
    return found[1]


def cap_field(page: str) -> str | None:
    found = re.search(r'<input name="max_concurrent"[^>]*value="([^"]*)"', page)
    return None if found is None else found[1]


def test_the_cap_in_flight_is_shown_and_set_on_the_tenant_page(gateway: GatewayServer) -> None:
    tid, _ = gateway.new_tenant(rpm=100, flags={"max_concurrent_requests": 4, "cache": False})
    path = f"/dashboard/tenants/{tid}"
    c = dashboard_session(gateway)
    try:
        page = c.get(path).text
        assert cap_field(page) == "4"
        form = {"budget_period": "monthly", "rpm": "100", "max_concurrent_shown": "1"}
        r = c.post(
            path + "/settings", data={**form, "max_concurrent": "2", "csrf_token": csrf(page)}
        )
        assert r.status_code == 303, r.text[:500]
        flags = gateway.admin("GET", f"/admin/tenants/{tid}").json()["flags"]
        assert flags == {"max_concurrent_requests": 2, "cache": False}  # other flags kept
        page = c.get(path).text
        assert cap_field(page) == "2"
        # a form without the field (a page loaded before it existed) leaves the cap alone
        old_form = {"budget_period": "monthly", "rpm": "100"}
        r = c.post(path + "/settings", data={**old_form, "csrf_token": csrf(page)})
        assert r.status_code == 303
        assert (
            gateway.admin("GET", f"/admin/tenants/{tid}").json()["flags"]["max_concurrent_requests"]
            == 2
        )
        bad = c.post(
            path + "/settings", data={**form, "max_concurrent": "0", "csrf_token": csrf(page)}
        )
        assert bad.status_code == 400 and "in flight" in bad.text
        r = c.post(
            path + "/settings", data={**form, "max_concurrent": "", "csrf_token": csrf(page)}
        )
        assert r.status_code == 303
        assert gateway.admin("GET", f"/admin/tenants/{tid}").json()["flags"] == {"cache": False}
        assert cap_field(c.get(path).text) == ""
    finally:
        c.close()
