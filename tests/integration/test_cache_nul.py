"""A NUL character in a prompt (Postgres TEXT refuses it) must not lose the cache entry."""

from __future__ import annotations

import uuid

import pytest

from tests.support.servers import GatewayServer, sdk_client, sql, wait_for

pytestmark = pytest.mark.integration


def test_a_prompt_with_a_nul_is_cached_in_the_table(gateway: GatewayServer) -> None:
    _, key = gateway.new_tenant()
    client = sdk_client(gateway, key)
    text = f"split a\x00b on the NUL {uuid.uuid4().hex}"
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
    )
    rows = wait_for(
        lambda: sql(
            gateway.db_url,
            "SELECT query_text FROM cache_entries WHERE query_text LIKE $1",
            f"%{text[-32:]}",
        )
    )
    assert rows, gateway.log()[-2000:]
    assert "writing a cache entry failed" not in gateway.log()
