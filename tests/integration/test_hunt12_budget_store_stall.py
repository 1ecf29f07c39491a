"""A budget check the database does not answer is an unavailable budget store.

Postgres that stops answering (a failover in progress, a partition: here a proxy that stops
forwarding) hung every request of a budgeted tenant for as long as it did: 20 s and 45 s stalls
held every such request 20 s and 45 s, where a tenant without a budget was served within the
key lookup's 3 s bound. The reservation's statement timed out after 10 s, but asyncpg's cancel
of it went through the same stalled path, and the requests behind it waited on it. The check is
bounded now, and then applies THRIFTGATE_BUDGET_DB_DOWN_POLICY: fail-open serves (the row is
written once the database is back), fail-closed answers 503.
"""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    ledger_row,
    mock_deployment,
    sdk_client,
)
from tests.support.tcp_proxy import StallingProxy

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("policy", ["fail-open", "fail-closed"])
def test_a_stalled_budget_store_applies_the_down_policy(
    session_tmp: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer, policy: str
) -> None:
    proxy = StallingProxy(fresh_pg_url)
    env = {
        "THRIFTGATE_BUDGET_DB_DOWN_POLICY": policy,
        "THRIFTGATE_KEY_CACHE_TTL_S": "600",  # the key stays cached: only the budget waits
    }
    deps = [mock_deployment("m", "m", mock_upstream)]
    gw = GatewayServer(session_tmp, proxy.url, deps, extra_env=env)
    try:
        _, key = gw.new_tenant(budget_usd="5")
        # a client that gives up well after the bound, and well before the stall would end
        client = sdk_client(gw, key).with_options(timeout=15)
        ask = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
        ask["extra_headers"] = {"Cache-Control": "no-store"}  # a miss each time: it needs budget
        client.chat.completions.create(**ask)  # key cached, budget counter ready
        proxy.stall()
        request_ids = []
        try:
            for _ in range(2):  # the first, and one behind the stalled connections it left
                if policy == "fail-open":
                    answer = client.chat.completions.with_raw_response.create(**ask)
                    assert answer.status_code == 200
                    request_ids.append(answer.headers["x-request-id"])
                    continue
                with pytest.raises(openai.APIStatusError) as refused:
                    client.chat.completions.create(**ask)
                assert refused.value.status_code == 503
                assert refused.value.code == "budget_store_unavailable"
                request_ids.append(refused.value.response.headers["x-request-id"])
        finally:
            proxy.resume()
        for request_id in request_ids:  # written once the database answers again
            row = ledger_row(gw, request_id)
            assert row["status_code"] == (200 if policy == "fail-open" else 503)
    finally:
        gw.stop()
        proxy.close()
