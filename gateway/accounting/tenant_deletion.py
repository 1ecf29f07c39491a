"""Deleting a tenant: what it was billed stays, everything that serves it goes.

In one transaction: the tenant is marked `deleted_at` and renamed `<name> (deleted <id>)`, so
its name can be given to a new tenant while its ledger rows, budget counters and rollups still
say whose they were; every key of it is revoked; its cache entries are deleted and a purge is
recorded (other replicas drop their in-memory copies within a poll interval); its stored
Responses items are deleted. On Postgres a key-event NOTIFY goes out at commit, so every replica
forgets the tenant's cached keys at once (on SQLite the key-cache TTL applies). Requests already
in flight finish and are billed as usual, but what they would store for the tenant (a cache
entry, Responses items) is not stored: those writes go through `deleted_among`. Deletion cannot
be undone.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.accounting.tenants import NAME_MAX, get_tenant
from gateway.db.models import ApiKey, CacheEntry, CachePurge, ResponseItem, Tenant, new_id, table
from gateway.db.session import is_sqlite
from gateway.errors import Conflict
from gateway.pipeline.key_events import notify as notify_replicas


def deleted_name(name: str, tenant_id: str) -> str:
    suffix = f" (deleted {tenant_id})"
    return name[: NAME_MAX - len(suffix)] + suffix


async def delete_tenant(engine: AsyncEngine, tenant_id: str) -> dict[str, Any]:
    """Delete a tenant (see the module's docstring); returns it with what was removed."""
    tenant = await get_tenant(engine, tenant_id)
    if tenant["deleted_at"] is not None:
        raise _already(tenant_id)
    new_name = deleted_name(tenant["name"], tenant_id)
    try:
        async with engine.begin() as conn:
            removed = await _remove(
                conn, tenant_id, new_name, notify=not is_sqlite(str(engine.url))
            )
    except IntegrityError:  # a live tenant was given that name by hand
        raise Conflict(
            f"Another tenant is named {new_name!r}; rename it first.", code="tenant_exists"
        ) from None
    result = await get_tenant(engine, tenant_id)
    result["removed"] = removed
    return result


async def _remove(
    conn: AsyncConnection, tenant_id: str, new_name: str, *, notify: bool
) -> dict[str, int]:
    now = datetime.now(UTC)
    t, k = table(Tenant), table(ApiKey)
    marked = await conn.execute(
        update(t)
        .where(t.c.id == tenant_id, t.c.deleted_at.is_(None))
        .values(deleted_at=now, name=new_name)
    )
    if marked.rowcount == 0:  # a concurrent deletion won
        raise _already(tenant_id)
    keys = await conn.execute(
        update(k).where(k.c.tenant_id == tenant_id, k.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    await conn.execute(insert(CachePurge).values(id=new_id(), tenant_id=tenant_id, purged_at=now))
    cached = await conn.execute(delete(CacheEntry).where(CacheEntry.tenant_id == tenant_id))
    items = (
        await conn.execute(
            select(func.count())
            .select_from(ResponseItem)
            .where(ResponseItem.tenant_id == tenant_id)
        )
    ).scalar_one()
    await conn.execute(delete(ResponseItem).where(ResponseItem.tenant_id == tenant_id))
    if notify:
        await notify_replicas(conn, tenant_id)
    return {
        "keys_revoked": int(keys.rowcount or 0),
        "cache_entries": int(cached.rowcount or 0),
        "response_items": int(items),
    }


async def deleted_among(conn: AsyncConnection, tenant_ids: Iterable[str]) -> set[str]:
    """Those of `tenant_ids` that are deleted, for a write of rows kept for tenants: their
    rows are held (FOR SHARE on Postgres; SQLite has one writer) until the caller's transaction
    ends, so a deletion waits for a write made before it, and a write after it sees it."""
    t = table(Tenant)
    ids = sorted(set(tenant_ids))
    rows = await conn.execute(
        select(t.c.id, t.c.deleted_at)
        .where(t.c.id.in_(ids))
        .order_by(t.c.id)
        .with_for_update(read=True)
    )
    return {r.id for r in rows if r.deleted_at is not None}


def _already(tenant_id: str) -> Conflict:
    return Conflict(f"Tenant {tenant_id!r} is already deleted.", code="tenant_deleted")
