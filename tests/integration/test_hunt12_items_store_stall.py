"""Stored responses the database does not answer for are an unavailable store, at once.

With Postgres stalled (a partition, a failover in progress: here a proxy that stops
forwarding), `responses.retrieve` answered its 503 `store_unavailable` only after asyncpg's
60 s connect timeout, and a turn with `previous_response_id` waited past the client's 120 s
timeout (the stored conversation is read from the table, which a deletion on any replica
updates). Both reads are bounded now, as the key lookup and the budget check are.
"""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    mock_deployment,
    sdk_client,
    sql,
    wait_for,
)
from tests.support.tcp_proxy import StallingProxy

pytestmark = pytest.mark.integration


def test_stored_responses_in_a_stalled_database_are_a_prompt_503(
    session_tmp: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer
) -> None:
    proxy = StallingProxy(fresh_pg_url)
    env = {"THRIFTGATE_KEY_CACHE_TTL_S": "600"}  # the key stays cached through the stall
    gw = GatewayServer(
        session_tmp, proxy.url, [mock_deployment("m", "m", mock_upstream)], extra_env=env
    )
    try:
        _, key = gw.new_tenant()
        # a client that gives up well after the bound, and well before the stall would end
        client = sdk_client(gw, key).with_options(timeout=15)
        first = client.responses.create(model="m", input="first")
        client.responses.retrieve(first.id)
        # The process's own copy answers until its write lands (and while the table is down):
        # on a busy machine the write was still in flight at the stall, and the copy answered.
        wait_for(
            lambda: sql(fresh_pg_url, "SELECT 1 FROM response_items WHERE item_id = $1", first.id)
        )
        proxy.stall()
        try:
            with pytest.raises(openai.APIStatusError) as read:
                client.responses.retrieve(first.id)
            assert (read.value.status_code, read.value.code) == (503, "store_unavailable")
            with pytest.raises(openai.APIStatusError) as continued:
                client.responses.create(model="m", input="second", previous_response_id=first.id)
            assert (continued.value.status_code, continued.value.code) == (503, "store_unavailable")
        finally:
            proxy.resume()
        client.responses.create(model="m", input="second", previous_response_id=first.id)
    finally:
        gw.stop()
        proxy.close()
