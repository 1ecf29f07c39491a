"""ResponseCache against a real (SQLite) database: two instances on one file behave like two
replicas; a database that is down at start does not stop the cache."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np

from gateway.cache.response_cache import CacheConfig, ResponseCache
from gateway.cache.store import CacheStore, StoredEntry
from gateway.db.migrate import upgrade_head
from gateway.db.models import new_id, utcnow
from gateway.db.session import create_engine


def entry(tenant: str, key: str, ttl_s: int = 3600) -> StoredEntry:
    now = utcnow()
    vec = np.zeros(384, dtype=np.float32)
    vec[0] = 1.0
    return StoredEntry(
        id=new_id(), tenant_id=tenant, scope=f"{tenant}-scope", key=key, model="m",
        query="what is up", embedding=vec, response=b'{"choices": []}', prompt_tokens=3,
        completion_tokens=4, cost_usd=Decimal("0.001"), created_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
    )  # fmt: skip


async def test_two_instances_follow_one_table(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cache.db'}"
    await upgrade_head(url)
    engine = create_engine(url)
    config = CacheConfig(semantic=False, poll_interval_s=3600)  # we poll by hand
    a = ResponseCache(CacheStore(engine), None, config)
    b = ResponseCache(CacheStore(engine), None, config)
    try:
        await a.load()
        await b.load()
        e = entry("t1", "k1")
        await a.put(e)
        assert a.exact("k1") is e
        await a.aclose()  # waits for the background write
        assert b.exact("k1") is None
        assert await b.sync_once() == 1
        got = b.exact("k1")
        assert got is not None and got.id == e.id and got.embedding is not None
        assert np.allclose(got.embedding, e.embedding)
        assert await b.sync_once() == 0  # already seen
        # a purge through a third instance reaches b through the purge log
        c = ResponseCache(CacheStore(engine), None, config)
        assert await c.purge("t1") == 1
        await c.aclose()
        await b.sync_once()
        assert b.exact("k1") is None
        # and a restart does not bring the row back
        d = ResponseCache(CacheStore(engine), None, config)
        await d.load()
        assert d.exact("k1") is None
        await d.aclose()
    finally:
        await b.aclose()
        await engine.dispose()


async def test_database_down_at_start_is_not_fatal() -> None:
    engine = create_engine("postgresql://postgres@127.0.0.1:1/nothing")
    cache = await ResponseCache.start(engine, CacheConfig(semantic=False, poll_interval_s=3600))
    try:
        assert cache.exact("anything") is None
        await cache.put(entry("t1", "k2"))  # served from memory; the write fails quietly
        assert cache.exact("k2") is not None
    finally:
        await cache.aclose()
        await engine.dispose()


async def test_an_answer_stored_without_usage_is_served_with_the_billed_counts(
    tmp_path: Path,
) -> None:
    # An upstream that reports no usage: the miss's body says what the ledger billed (tiktoken),
    # so its hits must too, not `usage: null`.
    import orjson

    url = f"sqlite+aiosqlite:///{tmp_path / 'cache.db'}"
    await upgrade_head(url)
    engine = create_engine(url)
    cache = ResponseCache(CacheStore(engine), None, CacheConfig(semantic=False))
    try:
        e = entry("t1", "k-no-usage")
        await cache.put(e)
        got = cache.exact("k-no-usage")
        assert got is not None
        usage = orjson.loads(got.response)["usage"]
        assert usage == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        # an answer with its own usage keeps it as it is
        own = {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 1}}
        e2 = entry("t1", "k-usage")
        e2.response = orjson.dumps(own)
        await cache.put(e2)
        assert orjson.loads(cache.exact("k-usage").response) == own  # type: ignore[union-attr]
    finally:
        await cache.aclose()
        await engine.dispose()


async def test_a_store_cancelled_before_it_was_added_leaves_no_scope_to_search(
    tmp_path: Path,
) -> None:
    """A client hanging up while its answer waited for the cache's worker thread: the entry
    never reached the index, so its scope has nothing to compare with and lookups there skip
    the embedding (it used to stay marked 'being embedded' for good: ~4 ms of CPU a request)."""
    import asyncio
    import contextlib
    import threading

    url = f"sqlite+aiosqlite:///{tmp_path / 'cache.db'}"
    await upgrade_head(url)
    engine = create_engine(url)
    embedder = type("NeverCalled", (), {"dim": 384})()  # the entry is cancelled before it
    cache = ResponseCache(CacheStore(engine), embedder, CacheConfig(poll_interval_s=3600))
    try:
        await cache.load()
        e = entry("t1", "k1")
        e.embedding = None  # to be embedded after the store
        busy = threading.Event()
        await asyncio.sleep(0)
        blocker = asyncio.get_running_loop().run_in_executor(cache._worker, busy.wait, 5.0)
        put = asyncio.create_task(cache.put(e))
        for _ in range(20):  # until put waits for the worker
            await asyncio.sleep(0)
        assert cache.scope_may_match(e.scope)  # a lookup meanwhile may still find it
        put.cancel()
        busy.set()
        await blocker
        with contextlib.suppress(asyncio.CancelledError):
            await put
        assert not cache.scope_may_match(e.scope)
    finally:
        await cache.aclose()
        await engine.dispose()
