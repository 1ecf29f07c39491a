"""This replica's copy of the cache: entries by id, the exact-key map, the vector index, and
the TTL / per-tenant size bound applied the same way on every replica.

Mutated only from the cache's worker thread; `exact()` is a plain dict read, safe from the
event loop.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime

from gateway.cache.index import Neighbour, Vector, VectorIndex
from gateway.cache.store import StoredEntry
from gateway.cache.text_facts import TextFacts, analyse


class CacheMemory:
    def __init__(self, dim: int, *, max_entries_per_tenant: int, ann_min: int) -> None:
        self.index = VectorIndex(dim, ann_min=ann_min)
        self.max_entries_per_tenant = max_entries_per_tenant
        self.entries: dict[str, StoredEntry] = {}
        self._exact: dict[str, str] = {}  # exact key -> entry id (keys include the tenant)
        # Per tenant, entry ids oldest first: eviction order for the size bound.
        self._by_tenant: dict[str, OrderedDict[str, None]] = {}
        self._facts: dict[str, TextFacts] = {}
        self._purged_before: dict[str, datetime] = {}  # tenant -> last purge time
        self._expiry: list[tuple[datetime, str]] = []  # heap; stale items skipped on pop

    def __len__(self) -> int:
        return len(self.entries)

    def exact(self, key: str, now: datetime) -> StoredEntry | None:
        entry_id = self._exact.get(key)
        entry = self.entries.get(entry_id) if entry_id is not None else None
        if entry is None or entry.expired(now):
            return None
        return entry

    def add(
        self, entries: Iterable[StoredEntry], now: datetime, limits: dict[str, int] | None = None
    ) -> list[str]:
        """Add entries (skipping known, expired or purged ones); return ids the bound evicted."""
        touched: set[str] = set()
        for e in sorted(entries, key=lambda e: e.created_at):
            if e.id in self.entries or e.expired(now):
                continue
            purged = self._purged_before.get(e.tenant_id)
            if purged is not None and e.created_at <= purged:
                continue
            self.entries[e.id] = e
            self._exact[e.key] = e.id
            self._by_tenant.setdefault(e.tenant_id, OrderedDict())[e.id] = None
            if e.embedding is not None:
                self.index.add(e.scope, e.id, e.embedding)
            if e.expires_at is not None:
                heapq.heappush(self._expiry, (e.expires_at, e.id))
            touched.add(e.tenant_id)
        evicted: list[str] = []
        for tenant in touched:
            bound = (limits or {}).get(tenant, self.max_entries_per_tenant)
            order = self._by_tenant[tenant]
            while len(order) > bound:
                oldest = next(iter(order))
                evicted.append(oldest)
                self.remove(oldest)
        return evicted

    def attach(self, entry: StoredEntry) -> None:
        """Index an entry whose embedding arrived after it was added."""
        if entry.embedding is not None and self.entries.get(entry.id) is entry:
            self.index.add(entry.scope, entry.id, entry.embedding)

    def remove(self, entry_id: str) -> None:
        e = self.entries.pop(entry_id, None)
        if e is None:
            return
        if self._exact.get(e.key) == entry_id:
            del self._exact[e.key]
        order = self._by_tenant.get(e.tenant_id)
        if order is not None:
            order.pop(entry_id, None)
            if not order:
                del self._by_tenant[e.tenant_id]
        self._facts.pop(entry_id, None)
        if e.embedding is not None:
            self.index.remove(e.scope, entry_id)

    def expire(self, now: datetime) -> int:
        removed = 0
        while self._expiry and self._expiry[0][0] <= now:
            _, entry_id = heapq.heappop(self._expiry)
            e = self.entries.get(entry_id)
            if e is not None and e.expired(now):
                self.remove(entry_id)
                removed += 1
        return removed

    def purge_tenant(self, tenant_id: str, at: datetime) -> int:
        prev = self._purged_before.get(tenant_id)
        self._purged_before[tenant_id] = at if prev is None else max(prev, at)
        ids = [
            i for i, e in self.entries.items() if e.tenant_id == tenant_id and e.created_at <= at
        ]
        for entry_id in ids:
            self.remove(entry_id)
        return len(ids)

    def tenant_size(self, tenant_id: str) -> int:
        return len(self._by_tenant.get(tenant_id, ()))

    def search(self, scope: str, vec: Vector, k: int) -> list[Neighbour]:
        return self.index.search(scope, vec, k)

    def facts(self, entry: StoredEntry) -> TextFacts:
        facts = self._facts.get(entry.id)
        if facts is None:
            facts = self._facts[entry.id] = analyse(entry.query or "")
        return facts
