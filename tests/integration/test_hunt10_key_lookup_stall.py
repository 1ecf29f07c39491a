"""A key lookup the database does not answer is an unavailable key store (hunt10 h6)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest

from tests.support.servers import GatewayServer, MockUpstreamServer, mock_deployment, sdk_client

pytestmark = pytest.mark.integration


def test_a_stalled_key_lookup_serves_the_stale_entry(
    session_tmp: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer
) -> None:
    """A database that stops answering (a stalled server, a failover, here a lock on api_keys)
    hung every request of a key whose cache entry had expired, for as long as the database
    did: the stale entry (fail-open) was only used when the lookup raised."""
    deps = [mock_deployment("m", "m", mock_upstream)]
    env = {"THRIFTGATE_KEY_CACHE_TTL_S": "0.5"}
    gw = GatewayServer(session_tmp, fresh_pg_url, deps, extra_env=env)
    try:
        _, key = gw.new_tenant()
        client = sdk_client(gw, key).with_options(timeout=20)
        ask = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
        client.chat.completions.create(**ask)  # the key is cached

        async def while_locked() -> float:
            conn = await asyncpg.connect(fresh_pg_url.replace("+asyncpg", ""))
            try:
                async with conn.transaction():
                    await conn.execute("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
                    await asyncio.sleep(1.0)  # past the cache entry's TTL
                    started = time.monotonic()
                    await asyncio.to_thread(client.chat.completions.create, **ask)
                    return time.monotonic() - started
            finally:
                await conn.close()

        took = asyncio.run(while_locked())
        assert took < 10, took
        assert "stale entry" in gw.log()
    finally:
        gw.stop()
