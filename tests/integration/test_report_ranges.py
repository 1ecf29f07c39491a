"""`/admin/spend` and `/admin/requests` ranges as operators write them (hunt10 h1): an offset
typed into a URL (its '+' arrives as a space), a date alone as `until` (the whole day), Unix
seconds."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

import pytest

from tests.support.servers import GatewayServer, sql

pytestmark = pytest.mark.integration

ROW = """
INSERT INTO usage_ledger (id, request_id, tenant_id, endpoint, model, deployment, status_code,
    stream, prompt_tokens, completion_tokens, cached_tokens, usage_source, cost_usd,
    counterfactual_cost_usd, saved_cache_usd, saved_compression_usd, saved_routing_usd,
    latency_ms, cache_status, created_at)
VALUES ($1, 'r', $2, 'chat', 'm', 'd', 200, false, 1, 1, 0, 'upstream', $3, $3, 0, 0, 0,
        5, 'miss', $4)
"""


def _tenant_with_rows(gateway: GatewayServer, rows: dict[str, str]) -> str:
    """A tenant id with one ledger row per (UTC time -> cost)."""
    tenant, _ = gateway.new_tenant()
    for at, cost in rows.items():
        when = datetime.fromisoformat(at)
        sql(gateway.db_url, ROW, uuid.uuid4().hex, tenant, Decimal(cost), when)
    return tenant


def _spent(gateway: GatewayServer, tenant: str, query: str) -> str:
    # the query string goes out as written: a '+' stays a '+' on the wire
    r = gateway.admin("GET", f"/admin/spend?tenant={tenant}&group_by=tenant&{query}")
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    return data[0]["cost_usd"] if data else "0"


def test_an_offset_typed_into_the_url_is_the_instant_it_names(gateway: GatewayServer) -> None:
    """`since=2026-11-24T13:00:00+05:00` in a URL reaches the server with a space for the '+':
    it was a 400 saying the ISO-8601 time it got was not ISO-8601."""
    tenant = _tenant_with_rows(gateway, {"2026-11-24T07:59:00Z": "1", "2026-11-24T08:00:00Z": "2"})
    assert _spent(gateway, tenant, "since=2026-11-24T13:00:00+05:00") == "2"
    assert _spent(gateway, tenant, "until=2026-11-24T03:00:00-05:00") == "1"
    assert _spent(gateway, tenant, "since=2026-11-24T13:00:00%2B05:00") == "2"  # encoded


def test_a_date_alone_as_until_includes_that_day(gateway: GatewayServer) -> None:
    """November's spend asked as `since=2026-11-01&until=2026-11-30` left the 30th out."""
    tenant = _tenant_with_rows(
        gateway,
        {
            "2026-10-31T23:59:59Z": "1",
            "2026-11-01T00:00:00Z": "2",
            "2026-11-30T23:30:00Z": "4",
            "2026-12-01T00:00:00Z": "8",
        },
    )
    assert _spent(gateway, tenant, "since=2026-11-01&until=2026-11-30") == "6"
    assert _spent(gateway, tenant, "since=2026-11-01&until=2026-12-01T00:00:00Z") == "6"
    r = gateway.admin("GET", f"/admin/requests?tenant={tenant}&until=2026-11-30")
    assert r.status_code == 200 and len(r.json()["data"]) == 3


def test_unix_seconds_and_a_bad_time(gateway: GatewayServer) -> None:
    tenant = _tenant_with_rows(gateway, {"2026-11-24T08:00:00Z": "2"})
    at = 1795507200  # 2026-11-24T08:00:00Z
    assert _spent(gateway, tenant, f"since={at}") == "2"
    assert _spent(gateway, tenant, f"since={at + 1}") == "0"
    r = gateway.admin("GET", "/admin/spend?since=yesterday")
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "since" and "Unix seconds" in error["message"]
