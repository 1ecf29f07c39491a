"""Cache rows in the database: write, follow (poll what other replicas wrote), purge, expire.

Replicas follow the `cache_entries` table by polling `created_at` with an overlap window: a
row committed late (a slow transaction, a replica's clock a little behind) is still seen, and
ids already known are skipped. Purges go through `cache_purges`, so every replica drops the
purged tenant's entries within a poll interval.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
import orjson
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.tenant_deletion import deleted_among
from gateway.db.models import CacheEntry, CachePurge, as_utc, new_id, utcnow


@dataclass(slots=True)
class StoredEntry:
    """One cache entry as every replica holds it in memory."""

    id: str
    tenant_id: str
    scope: str
    key: str
    model: str
    query: str | None
    embedding: np.ndarray[Any, np.dtype[np.float32]] | None
    response: bytes  # orjson of the response body
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal
    created_at: datetime
    expires_at: datetime | None
    # Tokens the compress stage cut from the prompt before it was sent (tiktoken counts): a
    # hit avoided the uncompressed prompt, as the miss that stored the answer would have.
    prompt_tokens_removed: int = 0

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "scope_hash": self.scope,
            "key_hash": self.key,
            "model": self.model,
            # Postgres text refuses NUL (the write failed and the entry was lost to the other
            # replicas and to restarts); the query is only read for the verifier, which
            # ignores both characters
            "query_text": self.query.replace("\x00", "\ufffd") if self.query else self.query,
            "embedding": self.embedding.astype("<f4").tobytes()
            if self.embedding is not None
            else None,
            "response": _with_meta(orjson.loads(self.response), self.prompt_tokens_removed),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "hits": 0,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
        }


_COLUMNS = (
    CacheEntry.id,
    CacheEntry.tenant_id,
    CacheEntry.scope_hash,
    CacheEntry.key_hash,
    CacheEntry.model,
    CacheEntry.query_text,
    CacheEntry.embedding,
    CacheEntry.response,
    CacheEntry.prompt_tokens,
    CacheEntry.completion_tokens,
    CacheEntry.cost_usd,
    CacheEntry.created_at,
    CacheEntry.expires_at,
)


# The `response` column holds the answer's JSON; what the entry knows beyond the answer rides
# along under this key (no answer has it) and is taken off again when the row is read.
_META = "x_thriftgate_entry"


def _with_meta(response: Any, prompt_tokens_removed: int) -> Any:
    if not prompt_tokens_removed or not isinstance(response, dict):
        return response
    return {**response, _META: {"prompt_tokens_removed": prompt_tokens_removed}}


def _without_meta(response: Any) -> tuple[Any, int]:
    if not isinstance(response, dict) or _META not in response:
        return response, 0
    response = dict(response)
    meta = response.pop(_META)
    removed = meta.get("prompt_tokens_removed") if isinstance(meta, dict) else None
    if not isinstance(removed, int) or isinstance(removed, bool) or removed < 0:
        return response, 0
    return response, removed


def _entry(row: Any) -> StoredEntry:
    emb = np.frombuffer(row.embedding, dtype="<f4").astype(np.float32) if row.embedding else None
    response, removed = _without_meta(row.response)
    return StoredEntry(
        id=row.id,
        tenant_id=row.tenant_id,
        scope=row.scope_hash,
        key=row.key_hash,
        model=row.model,
        query=row.query_text,
        embedding=emb,
        response=orjson.dumps(response),
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        cost_usd=Decimal(row.cost_usd),
        created_at=as_utc(row.created_at),
        expires_at=as_utc(row.expires_at) if row.expires_at is not None else None,
        prompt_tokens_removed=removed,
    )


class CacheStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def insert(self, entries: Sequence[StoredEntry]) -> None:
        if not entries:
            return
        async with self.engine.begin() as conn:
            # a request in flight when its tenant was deleted stores nothing for it
            gone = await deleted_among(conn, (e.tenant_id for e in entries))
            rows = [e.row() for e in entries if e.tenant_id not in gone]
            if rows:
                await conn.execute(insert(CacheEntry), rows)

    async def live(self, now: datetime, page: int = 5000) -> AsyncIterator[list[StoredEntry]]:
        """Every unexpired entry, oldest first, in pages (start-up load)."""
        after: tuple[datetime, str] | None = None
        while True:
            q = select(*_COLUMNS).where(
                (CacheEntry.expires_at.is_(None)) | (CacheEntry.expires_at > now)
            )
            if after is not None:
                q = q.where(
                    (CacheEntry.created_at > after[0])
                    | ((CacheEntry.created_at == after[0]) & (CacheEntry.id > after[1]))
                )
            q = q.order_by(CacheEntry.created_at, CacheEntry.id).limit(page)
            async with self.engine.connect() as conn:
                rows = (await conn.execute(q)).all()
            if not rows:
                return
            batch = [_entry(r) for r in rows]
            yield batch
            after = (rows[-1].created_at, rows[-1].id)
            if len(rows) < page:
                return

    async def created_since(self, since: datetime) -> list[tuple[str, datetime]]:
        q = select(CacheEntry.id, CacheEntry.created_at).where(CacheEntry.created_at > since)
        async with self.engine.connect() as conn:
            return [(r.id, as_utc(r.created_at)) for r in (await conn.execute(q)).all()]

    async def fetch(self, ids: Sequence[str]) -> list[StoredEntry]:
        out: list[StoredEntry] = []
        for i in range(0, len(ids), 500):
            q = select(*_COLUMNS).where(CacheEntry.id.in_(ids[i : i + 500]))
            async with self.engine.connect() as conn:
                out.extend(_entry(r) for r in (await conn.execute(q)).all())
        return out

    async def purge_tenant(self, tenant_id: str) -> int:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(CachePurge).values(id=new_id(), tenant_id=tenant_id, purged_at=utcnow())
            )
            result = await conn.execute(delete(CacheEntry).where(CacheEntry.tenant_id == tenant_id))
        return int(getattr(result, "rowcount", 0) or 0)

    async def purges_since(self, since: datetime) -> list[tuple[str, str, datetime]]:
        q = select(CachePurge.id, CachePurge.tenant_id, CachePurge.purged_at).where(
            CachePurge.purged_at > since
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [(r.id, r.tenant_id, as_utc(r.purged_at)) for r in rows]

    async def delete_expired(self, now: datetime) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(CacheEntry).where(
                    CacheEntry.expires_at.is_not(None), CacheEntry.expires_at <= now
                )
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def delete_ids(self, ids: Sequence[str]) -> None:
        for i in range(0, len(ids), 500):
            async with self.engine.begin() as conn:
                await conn.execute(delete(CacheEntry).where(CacheEntry.id.in_(ids[i : i + 500])))
