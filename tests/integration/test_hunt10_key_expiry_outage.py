"""A key's expiry holds while the key store is unavailable (hunt10 h10)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import openai
import pytest

from tests.support.servers import GatewayServer, MockUpstreamServer, mock_deployment, sdk_client

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("ends", ["expiry", "grace"])
def test_a_stalled_key_lookup_does_not_serve_a_key_past_its_end(
    session_tmp: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer, ends: str
) -> None:
    """While the database did not answer, the key cache's stale entry (5c866d6) was served
    whatever it was: a key that expired, or whose grace period ended, during the outage
    kept working. The cache knows when the key stops; past that it is refused as it would be."""
    deps = [mock_deployment("m", "m", mock_upstream)]
    gw = GatewayServer(session_tmp, fresh_pg_url, deps)
    try:
        tid, _ = gw.new_tenant()
        made = gw.admin("POST", f"/admin/tenants/{tid}/keys", json={"expires_in_s": 2}
                        if ends == "expiry" else {})  # fmt: skip
        assert made.status_code == 201, made.text
        key = made.json()
        end = key["expires_at"]
        if ends == "grace":
            r = gw.admin("DELETE", f"/admin/keys/{key['id']}", params={"after_s": 2})
            assert r.status_code == 200, r.text
            end = r.json()["revoked_at"]
        client = sdk_client(gw, key["key"]).with_options(timeout=20, max_retries=0)
        ask = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
        client.chat.completions.create(**ask)  # the key is cached until its end

        async def while_locked() -> BaseException | None:
            conn = await asyncpg.connect(fresh_pg_url.replace("+asyncpg", ""))
            try:
                async with conn.transaction():
                    await conn.execute("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
                    left = (datetime.fromisoformat(end) - datetime.now(UTC)).total_seconds()
                    await asyncio.sleep(max(left, 0) + 0.3)
                    try:
                        await asyncio.to_thread(client.chat.completions.create, **ask)
                    except openai.APIError as exc:
                        return exc
                    return None
            finally:
                await conn.close()

        refused = asyncio.run(while_locked())
        assert isinstance(refused, openai.AuthenticationError), refused
        if ends == "expiry":
            assert refused.code == "expired_api_key"
    finally:
        gw.stop()


def test_a_key_known_expired_stays_refused_while_the_key_store_stalls(
    session_tmp: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer
) -> None:
    """An expired key's cached refusal, once stale, became a 503 key_store_unavailable while
    the database did not answer, which the SDK retries: an expiry does not end, so it is the
    401 expired_api_key still."""
    deps = [mock_deployment("m", "m", mock_upstream)]
    env = {"THRIFTGATE_KEY_CACHE_TTL_S": "0.5"}
    gw = GatewayServer(session_tmp, fresh_pg_url, deps, extra_env=env)
    try:
        tid, _ = gw.new_tenant()
        made = gw.admin("POST", f"/admin/tenants/{tid}/keys", json={"expires_in_s": 1})
        key = made.json()
        left = (datetime.fromisoformat(key["expires_at"]) - datetime.now(UTC)).total_seconds()
        time.sleep(max(left, 0) + 0.2)
        client = sdk_client(gw, key["key"]).with_options(timeout=20, max_retries=0)
        ask = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(**ask)  # its refusal is cached

        async def while_locked() -> BaseException | None:
            conn = await asyncpg.connect(fresh_pg_url.replace("+asyncpg", ""))
            try:
                async with conn.transaction():
                    await conn.execute("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
                    await asyncio.sleep(1.0)  # past the cache entry's TTL
                    try:
                        await asyncio.to_thread(client.chat.completions.create, **ask)
                    except openai.APIError as exc:
                        return exc
                    return None
            finally:
                await conn.close()

        refused = asyncio.run(while_locked())
        assert isinstance(refused, openai.AuthenticationError), refused
        assert refused.code == "expired_api_key"
    finally:
        gw.stop()
