"""/dashboard/tenants in pages of 100, with a name search: at 17k tenants one page was 3.9 s
and 7.6 MB. Deleted tenants are not listed."""

from __future__ import annotations

import re
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
    mock_deployment,
    sql,
)

pytestmark = pytest.mark.integration

SEED = """
INSERT INTO tenants (id, name, budget_period, flags, created_at)
SELECT md5('pg-' || n), 'pg-tenant-' || lpad(n::text, 3, '0'), 'monthly', '{}', now()
FROM generate_series(1, 250) AS n
"""


@pytest.fixture(scope="module")
def signed_in(session_tmp: Path, mock_upstream: MockUpstreamServer) -> Iterator[httpx.Client]:
    db = create_database("tg_tpages")
    gw = GatewayServer(session_tmp, db, [mock_deployment("m", "m", mock_upstream)])
    try:
        sql(db, SEED)
        sql(db, "INSERT INTO tenants (id, name, budget_period, flags, created_at) VALUES "
                "(md5('odd'), 'odd_100%', 'monthly', '{}', now())")  # fmt: skip
        gone, _ = gw.new_tenant("pg-tenant-gone")
        assert gw.admin("DELETE", f"/admin/tenants/{gone}").status_code == 200
        client = dashboard_session(gw)
        try:
            yield client
        finally:
            client.close()
    finally:
        gw.stop()
        drop_database(db)


def names(html: str) -> list[str]:
    return re.findall(r'<a href="/dashboard/tenants/[0-9a-f]+">([^<]+)</a>', html)


def test_pages_of_a_hundred_in_name_order(signed_in: httpx.Client) -> None:
    first = signed_in.get("/dashboard/tenants")
    assert first.status_code == 200
    listed = names(first.text)
    assert len(listed) == 100 and listed == sorted(listed)
    assert listed[0] == "odd_100%" and listed[1] == "pg-tenant-001"
    assert "1–100 of 251 tenants" in first.text
    assert "page=2" in first.text and "page 1 of 3" in first.text
    last = signed_in.get("/dashboard/tenants?page=3")
    assert names(last.text) == [f"pg-tenant-{n:03d}" for n in range(200, 251)]
    assert "201–251 of 251" in last.text and 'rel="next"' not in last.text
    assert not set(listed) & set(names(signed_in.get("/dashboard/tenants?page=2").text))
    assert "pg-tenant-gone" not in "".join(
        signed_in.get(f"/dashboard/tenants?page={p}").text for p in (1, 2, 3)
    )


def test_search_by_name_and_odd_pages(signed_in: httpx.Client) -> None:
    found = signed_in.get("/dashboard/tenants", params={"q": "TENANT-01"})
    assert names(found.text) == [f"pg-tenant-{n:03d}" for n in range(10, 20)]
    assert "of 10 tenants" in found.text
    # LIKE's wildcards are plain characters in a search.
    assert names(signed_in.get("/dashboard/tenants", params={"q": "_100%"}).text) == ["odd_100%"]
    assert names(signed_in.get("/dashboard/tenants", params={"q": "%"}).text) == ["odd_100%"]
    for odd in ("abc", "0", "-2", "²", "99999999999"):
        r = signed_in.get("/dashboard/tenants", params={"page": odd})
        assert r.status_code == 200 and len(names(r.text)) == 100, odd
    beyond = signed_in.get("/dashboard/tenants", params={"page": "40"})
    assert beyond.status_code == 200 and names(beyond.text) == []
    assert "No tenants here." in beyond.text
