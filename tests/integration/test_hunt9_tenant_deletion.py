"""Hunt 9 (h6): a tenant deleted while its requests are in flight."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    create_database,
    dashboard_session,
    drop_database,
    ledger_row,
    mock_deployment,
    sdk_client,
    sql,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def slow_gateway(session_tmp: Path) -> Iterator[GatewayServer]:
    mock = MockUpstreamServer(session_tmp, ms_per_token=150)
    db = create_database("tg_h6_del")
    gw = GatewayServer(session_tmp, db, [mock_deployment("m", "gpt-4o-mini", mock)])
    yield gw
    gw.stop()
    mock.stop()
    drop_database(db)


def test_requests_in_flight_at_deletion_leave_no_cache_entry_or_stored_item(
    slow_gateway: GatewayServer,
) -> None:
    """They finish and are billed, but what they would have stored for the tenant is not
    stored: deletion drops the cache and stored items once, and nothing could drop them later
    (a second deletion is a 409). Both stayed behind."""
    gw = slow_gateway
    tid, key = gw.new_tenant("deleted-in-flight")
    client = sdk_client(gw, key)
    done: dict[str, object] = {}

    def chat() -> None:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", stream=True, extra_headers={"x-request-id": "h6-chat"},
            messages=[{"role": "user", "content": "Tell me a long story about deletion"}],
        )  # fmt: skip
        done["chat"] = len(list(stream))

    def respond() -> None:
        reply = client.responses.create(
            model="gpt-4o-mini", input="Another long story, please, about anything",
            extra_headers={"x-request-id": "h6-resp"},
        )  # fmt: skip
        done["responses"] = reply.id

    threads = [threading.Thread(target=chat), threading.Thread(target=respond)]
    for t in threads:
        t.start()
    time.sleep(0.8)  # both are streaming from the upstream (150 ms a token)
    r = gw.admin("DELETE", f"/admin/tenants/{tid}")
    assert r.status_code == 200, r.text
    for t in threads:
        t.join(30)
    assert set(done) == {"chat", "responses"}
    assert ledger_row(gw, "h6-chat")["cost_usd"] > 0  # billed as usual
    assert ledger_row(gw, "h6-resp")["cost_usd"] > 0
    time.sleep(1.5)  # the cache's and the item store's background writes
    cached = sql(gw.db_url, "SELECT count(*) AS n FROM cache_entries WHERE tenant_id = $1", tid)
    items = sql(gw.db_url, "SELECT count(*) AS n FROM response_items WHERE tenant_id = $1", tid)
    assert (cached[0]["n"], items[0]["n"]) == (0, 0)


def _signed_in(gw: GatewayServer) -> httpx.Client:
    return dashboard_session(gw)


def test_a_dashboard_form_for_a_tenant_deleted_meanwhile_answers_its_page(
    gateway: GatewayServer,
) -> None:
    """A second click on Delete, or a key or settings form left open in another tab, answered
    a raw JSON 409 in the browser; it is the tenant's page, saying why (still a 409)."""
    tid, _ = gateway.new_tenant("dashboard-deleted-meanwhile")
    browser = _signed_in(gateway)
    try:
        page = browser.get(f"/dashboard/tenants/{tid}")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf is not None
        token = {"csrf_token": csrf[1]}
        first = browser.post(f"/dashboard/tenants/{tid}/delete", data=token)
        assert first.status_code == 303
        forms = {
            "delete": {},
            "keys": {"name": "late"},
            "settings": {"budget_usd": "5", "budget_period": "monthly"},
        }
        for form, fields in forms.items():
            r = browser.post(f"/dashboard/tenants/{tid}/{form}", data={**token, **fields})
            assert r.status_code == 409, form
            assert r.headers["content-type"].startswith("text/html"), form
            assert 'id="form-error"' in r.text and 'id="deleted-note"' in r.text, form
    finally:
        browser.close()
