"""A key lookup already running when a key is revoked (or its tenant changed) must not be
joined by requests that arrive after the invalidation: they would get what the database said
before the change, and cache it for the key-cache TTL."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.errors import AuthError
from gateway.pipeline.auth import KeyStore, Loaded
from gateway.pipeline.context import TenantInfo


def _tenant() -> TenantInfo:
    return TenantInfo(
        id="t1", name="acme", key_id="k1", budget_usd=Decimal(1), budget_period="monthly",
        rpm=None, tpm=None, default_slo_ms=None, flags={},
    )  # fmt: skip


@pytest.mark.asyncio
async def test_a_lookup_begun_before_a_revocation_is_not_joined_after_it() -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    store = KeyStore(engine, ttl_s=60)
    revoked = False
    first_read = asyncio.Event()
    release_first = asyncio.Event()

    async def load(digest: str) -> Loaded:
        if not revoked:  # the database before the revocation committed
            first_read.set()
            await release_first.wait()
            return _tenant(), None, None
        return None, None, None  # after it: no such (live) key

    store._load = load  # type: ignore[method-assign]
    before = asyncio.create_task(store.authenticate("tg-leaked"))
    await first_read.wait()
    revoked = True
    store.invalidate(tenant_id="t1")  # the revocation's NOTIFY arrives
    after = asyncio.create_task(store.authenticate("tg-leaked"))
    await asyncio.sleep(0)
    release_first.set()
    assert (await before).id == "t1"  # it was read before the revocation: served
    with pytest.raises(AuthError):
        await after
    with pytest.raises(AuthError):  # and nothing stale was cached for the TTL
        await store.authenticate("tg-leaked")
    await engine.dispose()
