"""The request log's CSV export names each row's tenant (hunt 8, h5).

The page shows tenant names; the export had only the 32-hex tenant id, so a spreadsheet of a
month's spend could not be read without a second lookup. The name comes last (a reader that
counts columns is unaffected), escaped for CSV and guarded like every other text cell.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import (
    ADMIN_KEY,
    GatewayServer,
    MockUpstreamServer,
    mock_deployment,
    sdk_client,
    wait_for,
)

pytestmark = pytest.mark.integration

NAMES = [
    'acme, "inc"',
    "ünïcødé 租户 🚀",
    '=cmd|" /C calc"!A0',
    "@sum(1)",
    "plain",
]


@pytest.fixture(scope="module")
def gw(
    session_tmp: Path, pg_url: str, mock_upstream: MockUpstreamServer
) -> Iterator[GatewayServer]:
    server = GatewayServer(
        session_tmp, pg_url, [mock_deployment("h5-export-mini", "h5-export-model", mock_upstream)]
    )
    yield server
    server.stop()


def _signed_in(gw: GatewayServer) -> httpx.Client:
    c = httpx.Client(base_url=gw.base, timeout=30)
    page = c.get("/dashboard/login").text
    token = re.search(r'name="login_token" value="([^"]+)"', page)
    assert token
    r = c.post("/dashboard/login", data={"admin_key": ADMIN_KEY, "login_token": token.group(1)})
    assert r.status_code == 303
    return c


def test_export_names_the_tenant_of_each_row(gw: GatewayServer) -> None:
    ids = {}
    for name in NAMES:
        tid, key = gw.new_tenant(name + " h5")
        ids[tid] = name + " h5"
        sdk_client(gw, key).chat.completions.create(
            model="h5-export-model", messages=[{"role": "user", "content": "hi"}]
        )
    c = _signed_in(gw)

    def rows() -> list[dict[str, str]]:
        text = c.get("/dashboard/requests.csv", params={"range": "24h"}).text
        return [r for r in csv.DictReader(io.StringIO(text)) if r["tenant_id"] in ids]

    got = wait_for(lambda: len(rows()) == len(NAMES) and rows())
    assert got, "the ledger rows never arrived"
    header = next(csv.reader(io.StringIO(c.get("/dashboard/requests.csv").text)))
    assert header[-1] == "tenant_name" and header[1] == "tenant_id"
    for r in got:
        name = ids[r["tenant_id"]]
        expected = "'" + name if name[0] in "=+-@" else name
        assert r["tenant_name"] == expected
