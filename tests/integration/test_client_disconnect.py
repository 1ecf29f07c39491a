"""A client that hangs up on a non-stream request cancels it: the upstream attempt stops, the
ledger row says 499 (billed for the prompt it sent upstream, not for an answer nobody got), and
the budget reservation is released. Before, an SDK that timed out and retried left each attempt
running upstream to its end, each billed in full and recorded as a 200 nobody received.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import openai
import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    create_database,
    drop_database,
    mock_deployment,
    sql,
    wait_for,
)

pytestmark = pytest.mark.integration

UPSTREAM_MS = 4000
CLIENT_TIMEOUT_S = 0.6


@pytest.fixture(scope="module", params=["fast-lane", "fastapi-routes"])
def rig(request: pytest.FixtureRequest, session_tmp: Path) -> Iterator[tuple[GatewayServer, str]]:
    tmp = session_tmp / f"disconnect-{request.param}"
    tmp.mkdir(exist_ok=True)
    db = create_database("tg_disconnect")
    mock = MockUpstreamServer(tmp, latency_ms=UPSTREAM_MS)
    env = {"THRIFTGATE_FAST_LANE": "false"} if request.param == "fastapi-routes" else {}
    gw: GatewayServer | None = None
    try:
        gw = GatewayServer(
            tmp, db, [mock_deployment("slow", "gpt-4o-mini", mock, default=True)], extra_env=env
        )
        tenant_id, key = gw.new_tenant(budget_usd=5)
        yield gw, key
        assert tenant_id
    finally:
        if gw is not None:
            gw.stop()
        mock.stop()
        drop_database(db)


def test_a_client_that_times_out_cancels_its_request(rig: tuple[GatewayServer, str]) -> None:
    gw, key = rig
    rid = "disc-" + uuid.uuid4().hex
    client = openai.OpenAI(base_url=gw.url, api_key=key, timeout=CLIENT_TIMEOUT_S, max_retries=1)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"a slow question {uuid.uuid4().hex}"}],
            extra_headers={"x-request-id": rid},
        )

    def rows() -> list[dict[str, object]]:
        got = sql(gw.db_url, "SELECT * FROM usage_ledger WHERE request_id = $1", rid)
        return [dict(r) for r in got] if len(got) >= 2 else []

    got = wait_for(rows, 10)
    assert len(got) == 2, got  # the SDK's attempt and its retry, each settled once
    for row in got:
        assert row["status_code"] == 499
        assert row["error_code"] == "client_disconnected"
        assert row["completion_tokens"] == 0
        assert row["prompt_tokens"] > 0  # the prompt went upstream: billed
        assert Decimal(row["cost_usd"]) > 0
        # cut when the client left, not when the upstream would have answered
        assert row["latency_ms"] < UPSTREAM_MS / 2, row["latency_ms"]
    reserved = wait_for(
        lambda: not [
            r
            for r in sql(gw.db_url, "SELECT reserved_usd, reserved_prev_usd FROM budget_counters")
            if r["reserved_usd"] or r["reserved_prev_usd"]
        ],
        10,
    )
    assert reserved, "the cancelled requests' budget reservations were not released"
    # the gateway is fine afterwards
    health = openai.OpenAI(base_url=gw.url, api_key=key, timeout=30, max_retries=0)
    models = health.models.list()
    assert [m.id for m in models.data] == ["gpt-4o-mini"]
