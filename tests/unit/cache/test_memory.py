"""This replica's copy of the cache: exact map, TTL, per-tenant bound, purges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np

from gateway.cache.memory import CacheMemory
from gateway.cache.store import StoredEntry

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def entry(i: int, tenant: str = "t1", *, age_s: int = 0, ttl_s: int | None = 3600) -> StoredEntry:
    created = T0 + timedelta(seconds=i - age_s)
    vec = np.zeros(8, dtype=np.float32)
    vec[i % 8] = 1.0
    return StoredEntry(
        id=f"e{i}", tenant_id=tenant, scope=f"{tenant}-scope", key=f"{tenant}-k{i}", model="m",
        query=f"question {i}", embedding=vec, response=b"{}", prompt_tokens=1,
        completion_tokens=1, cost_usd=Decimal("0.001"), created_at=created,
        expires_at=created + timedelta(seconds=ttl_s) if ttl_s else None,
    )  # fmt: skip


def test_exact_lookup_and_ttl() -> None:
    mem = CacheMemory(8, max_entries_per_tenant=100, ann_min=10_000)
    mem.add([entry(1, ttl_s=10), entry(2, ttl_s=None)], T0)
    assert mem.exact("t1-k1", T0) is not None
    assert mem.exact("t1-k1", T0 + timedelta(seconds=20)) is None  # expired, even before sweep
    assert mem.expire(T0 + timedelta(seconds=20)) == 1
    assert len(mem) == 1 and mem.exact("t1-k2", T0 + timedelta(days=400)) is not None
    hits = mem.search("t1-scope", np.eye(8, dtype=np.float32)[1], 4)
    assert [n.entry_id for n in hits] == ["e2"]  # the expired entry left the index too


def test_expired_rows_are_not_added() -> None:
    mem = CacheMemory(8, max_entries_per_tenant=100, ann_min=10_000)
    mem.add([entry(1, ttl_s=5)], T0 + timedelta(seconds=60))
    assert len(mem) == 0


def test_size_bound_evicts_oldest_per_tenant() -> None:
    mem = CacheMemory(8, max_entries_per_tenant=3, ann_min=10_000)
    evicted = mem.add([entry(i) for i in range(5)] + [entry(9, "t2")], T0)
    assert sorted(evicted) == ["e0", "e1"]
    assert mem.tenant_size("t1") == 3 and mem.tenant_size("t2") == 1
    evicted = mem.add([entry(10, "t2"), entry(11, "t2")], T0, {"t2": 2})
    assert evicted == ["e9"]


def test_purge_drops_the_tenant_and_refuses_older_rows() -> None:
    mem = CacheMemory(8, max_entries_per_tenant=100, ann_min=10_000)
    mem.add([entry(1), entry(2), entry(3, "t2")], T0)
    assert mem.purge_tenant("t1", T0 + timedelta(seconds=5)) == 2
    assert mem.tenant_size("t1") == 0 and mem.tenant_size("t2") == 1
    # a replica that polls late must not resurrect purged rows
    mem.add([entry(1)], T0)
    assert mem.tenant_size("t1") == 0
    mem.add([entry(9)], T0)  # created after the purge
    assert mem.tenant_size("t1") == 1


def test_entries_can_be_indexed_after_they_are_added() -> None:
    mem = CacheMemory(8, max_entries_per_tenant=100, ann_min=10_000)
    e = entry(3)
    vec = e.embedding
    e.embedding = None
    mem.add([e], T0)
    assert mem.exact("t1-k3", T0) is e and mem.index.size("t1-scope") == 0
    e.embedding = vec
    mem.attach(e)
    assert [n.entry_id for n in mem.search("t1-scope", vec, 1)] == ["e3"]
    mem.remove("e3")
    assert mem.index.size("t1-scope") == 0
    mem.attach(e)  # removed meanwhile: stays out
    assert mem.index.size("t1-scope") == 0
