"""Auth: bearer key -> tenant, through a short-lived in-process cache.

Revocation reaches this replica at once and, on Postgres, every other replica within a round
trip (`key_events.py`: LISTEN/NOTIFY); the cache TTL `ttl_s` is the fallback (SQLite: the only
path). While the database is unreachable or does not answer within LOOKUP_TIMEOUT_S, a key
this replica has seen valid keeps working (stale entry) and an unknown key gets 503, never a
500.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.keys import hash_key, same_hash
from gateway.db.models import ApiKey, Tenant, as_utc
from gateway.errors import AuthError, NoHealthyDeployment
from gateway.pipeline.context import TenantInfo
from gateway.pipeline.key_events import KeyEvents

log = logging.getLogger("thriftgate.auth")

NEGATIVE_TTL_S = 1.0
# A key lookup the database does not answer (a stalled server, a failover, a lock on api_keys)
# is an unavailable key store: the stale entry, or a 503. Without a bound, each request of a
# key whose entry had expired waited for as long as the database did.
LOOKUP_TIMEOUT_S = 3.0
MAX_ENTRIES = 100_000

# a key's tenant, None (no such key) or why it is refused (it expired); how long it stays so;
# and what it is then (why it is refused, None: it is revoked)
Loaded = tuple[TenantInfo | str | None, float | None, str | None]
# a cache entry: what was loaded, until when (monotonic) it is fresh, and when the key stops
# working (monotonic; None: never) with what it is then: a stale entry is not served past that
Entry = tuple[TenantInfo | str | None, float, float | None, str | None]


def bearer_token(authorization: str | None, api_key_header: str | None = None) -> str | None:
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    if api_key_header and api_key_header.strip():
        return api_key_header.strip()
    return None


class KeyStore:
    def __init__(self, engine: AsyncEngine, *, ttl_s: float = 5.0) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self._inflight: dict[str, asyncio.Future[Loaded]] = {}
        # a refusal message (a key that expired) is cached like a tenant
        self._cache: OrderedDict[str, Entry] = OrderedDict()
        self._generation = 0  # bumped by every invalidation: a load racing one is not cached
        self.events = KeyEvents(engine, lambda tenant_id: self.invalidate(tenant_id=tenant_id))

    async def start(self) -> None:
        await self.events.start()

    async def aclose(self) -> None:
        await self.events.aclose()

    async def invalidate_everywhere(self, tenant_id: str | None) -> None:
        """Drop the tenant's cached keys here and, through NOTIFY, on every other replica."""
        self.invalidate(tenant_id=tenant_id)
        await self.events.publish(tenant_id)

    async def authenticate_headers(self, headers: Mapping[str, str]) -> TenantInfo:
        """The tenant of a request's `Authorization: Bearer` (or `api-key`) header."""
        return await self.authenticate(
            bearer_token(headers.get("authorization"), headers.get("api-key"))
        )

    async def authenticate(self, raw_key: str | None) -> TenantInfo:
        if not raw_key:
            raise AuthError(
                "Missing API key. Send it as 'Authorization: Bearer <key>'.", code="missing_api_key"
            )
        digest = hash_key(raw_key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            info = hit[0]
        else:
            generation = self._generation
            try:
                info, valid_for, then = await asyncio.wait_for(
                    self._load_once(digest), LOOKUP_TIMEOUT_S
                )
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                if hit is None or hit[0] is None:
                    raise NoHealthyDeployment(
                        "The key store is unavailable; retry shortly.",
                        code="key_store_unavailable",
                    ) from exc
                if isinstance(hit[0], str):  # it expired: it still has
                    info = hit[0]
                elif hit[2] is None or hit[2] > time.monotonic():
                    log.warning("key store unavailable (%s): stale entry", type(exc).__name__)
                    return hit[0]
                else:
                    info = hit[3]  # it expired (or its grace period ended) since it was read
            else:
                if generation == self._generation:
                    self._remember(digest, info, now, valid_for, then)
        if info is None:
            raise AuthError("Incorrect API key provided.")
        if isinstance(info, str):
            raise AuthError(info, code="expired_api_key")
        return info

    async def _load_once(self, digest: str) -> Loaded:
        """Single flight: concurrent misses for one key share one database read."""
        pending = self._inflight.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        task = asyncio.ensure_future(self._load(digest))
        self._inflight[digest] = task
        try:
            return await asyncio.shield(task)
        finally:
            if self._inflight.get(digest) is task:
                del self._inflight[digest]

    async def _load(self, digest: str) -> Loaded:
        """The key's tenant (None: no such key; a message: it expired) and, for a key that
        stops working later (an expiry, a revocation after a grace period), the seconds
        until then: no cache entry outlives it."""
        t = Tenant.__table__.c
        k = ApiKey.__table__.c
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        k.id,
                        k.hash,
                        k.revoked_at,
                        k.expires_at,
                        t.id,
                        t.name,
                        t.budget_usd,
                        t.budget_period,
                        t.rpm,
                        t.tpm,
                        t.default_slo_ms,
                        t.flags,
                    )
                    .select_from(ApiKey.__table__.join(Tenant.__table__, t.id == k.tenant_id))
                    .where(k.hash == digest, t.deleted_at.is_(None))
                )
            ).first()
        if row is None:
            return None, None, None
        (key_id, stored_hash, revoked_at, expires_at,
         tid, name, budget, period, rpm, tpm, slo, flags) = row  # fmt: skip
        if not same_hash(stored_hash, digest):
            return None, None, None
        now = datetime.now(UTC)
        expired = None
        if expires_at is not None:
            when = as_utc(expires_at).isoformat(timespec="seconds")
            expired = f"This API key expired at {when}; ask for a new one."
        if revoked_at is not None and as_utc(revoked_at) <= now:
            return None, None, None
        if expires_at is not None and as_utc(expires_at) <= now:
            return expired, None, None
        ends = [as_utc(t) for t in (revoked_at, expires_at) if t is not None]
        valid_for = (min(ends) - now).total_seconds() if ends else None
        if revoked_at is not None and as_utc(revoked_at) == min(ends):
            expired = None  # revoked first: then an unknown key
        return (
            TenantInfo(
                id=tid,
                name=name,
                key_id=key_id,
                budget_usd=budget,
                budget_period=period,
                rpm=rpm,
                tpm=tpm,
                default_slo_ms=slo,
                flags=dict(flags or {}),
            ),
            valid_for,
            expired,
        )

    def _remember(
        self,
        digest: str,
        info: TenantInfo | str | None,
        now: float,
        valid_for: float | None,
        then: str | None,
    ) -> None:
        ttl = self.ttl_s if info is not None else NEGATIVE_TTL_S
        if valid_for is not None:
            ttl = min(ttl, valid_for)
        stops = None if valid_for is None else now + valid_for
        self._cache[digest] = (info, now + ttl, stops, then)
        self._cache.move_to_end(digest)
        while len(self._cache) > MAX_ENTRIES:
            self._cache.popitem(last=False)

    def invalidate(self, *, tenant_id: str | None = None) -> None:
        """Drop cached entries (all, or one tenant's) so the next request re-reads the DB."""
        self._generation += 1
        # A read already running may predate the change (a revocation): its callers get it,
        # but a request arriving now starts its own rather than joining that one. (Its tenant
        # is unknown until it returns, so every running read is let go.)
        self._inflight.clear()
        if tenant_id is None:
            self._cache.clear()
            return
        for digest in [
            d
            for d, (info, *_) in self._cache.items()
            if isinstance(info, TenantInfo) and info.id == tenant_id
        ]:
            del self._cache[digest]
