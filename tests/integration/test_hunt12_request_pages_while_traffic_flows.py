"""Paging `/admin/requests` while requests are being served: rows written between two pages
pushed the older ones down, so the next `offset` page repeated the previous page's last rows
(and the rows carried nothing to tell them apart by). A page's `next_cursor` continues after
its last row, whatever was written meanwhile."""

from __future__ import annotations

import pytest

from tests.support.servers import GatewayServer, sql

pytestmark = pytest.mark.integration

ROWS = """
INSERT INTO usage_ledger (id, request_id, tenant_id, endpoint, model, status_code, stream,
    prompt_tokens, completion_tokens, cached_tokens, usage_source, cost_usd,
    counterfactual_cost_usd, saved_cache_usd, saved_compression_usd, saved_routing_usd,
    latency_ms, cache_status, created_at)
SELECT $2 || g, $2 || g, $1, 'chat', 'paged-model', 200, false, 1, 1, 0, 'upstream',
       0.001, 0.001, 0, 0, 0, 1, 'miss', now() - $3 * interval '1 second' + g * interval '1 ms'
FROM generate_series(1, $4::int) AS g
"""


def test_pages_neither_repeat_nor_skip_rows_when_new_ones_arrive_between_them(
    gateway: GatewayServer,
) -> None:
    tid, _ = gateway.new_tenant()
    sql(gateway.db_url, ROWS, tid, "old-", 3600, 6)
    first = gateway.admin("GET", "/admin/requests", params={"tenant": tid, "limit": 4})
    assert first.status_code == 200, first.text
    assert first.json()["has_more"] is True
    sql(gateway.db_url, ROWS, tid, "new-", 0, 3)  # traffic meanwhile
    second = gateway.admin(
        "GET",
        "/admin/requests",
        params={"tenant": tid, "limit": 4, "cursor": first.json()["next_cursor"]},
    )
    assert second.status_code == 200, second.text
    assert second.json()["has_more"] is False and "next_cursor" not in second.json()
    seen = [r["request_id"] for r in first.json()["data"] + second.json()["data"]]
    assert seen == [f"old-{g}" for g in range(6, 0, -1)]  # newest first, each once
    assert len({r["id"] for r in first.json()["data"] + second.json()["data"]}) == 6


def test_an_unknown_cursor_is_a_400_naming_it(gateway: GatewayServer) -> None:
    r = gateway.admin("GET", "/admin/requests", params={"cursor": "nope"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "cursor"
