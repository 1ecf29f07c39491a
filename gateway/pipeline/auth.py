"""Auth: bearer key -> tenant, through a short-lived in-process cache.

Revocation reaches this replica at once (the admin API calls `invalidate`) and other replicas
within `ttl_s` at the latest (or at once where a notification channel is wired in).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.keys import hash_key, same_hash
from gateway.db.models import ApiKey, Tenant
from gateway.errors import AuthError
from gateway.pipeline.context import TenantInfo

NEGATIVE_TTL_S = 1.0
MAX_ENTRIES = 100_000


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
        self._cache: OrderedDict[str, tuple[TenantInfo | None, float]] = OrderedDict()

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
            info = await self._load(digest)
            self._remember(digest, info, now)
        if info is None:
            raise AuthError("Incorrect API key provided.")
        return info

    async def _load(self, digest: str) -> TenantInfo | None:
        t = Tenant.__table__.c
        k = ApiKey.__table__.c
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        k.id,
                        k.hash,
                        k.revoked_at,
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
                    .where(k.hash == digest)
                )
            ).first()
        if row is None:
            return None
        key_id, stored_hash, revoked_at, tid, name, budget, period, rpm, tpm, slo, flags = row
        if not same_hash(stored_hash, digest):
            return None
        if revoked_at is not None and _aware(revoked_at) <= datetime.now(UTC):
            return None
        return TenantInfo(
            id=tid,
            name=name,
            key_id=key_id,
            budget_usd=budget,
            budget_period=period,
            rpm=rpm,
            tpm=tpm,
            default_slo_ms=slo,
            flags=dict(flags or {}),
        )

    def _remember(self, digest: str, info: TenantInfo | None, now: float) -> None:
        ttl = self.ttl_s if info is not None else NEGATIVE_TTL_S
        self._cache[digest] = (info, now + ttl)
        self._cache.move_to_end(digest)
        while len(self._cache) > MAX_ENTRIES:
            self._cache.popitem(last=False)

    def invalidate(self, *, tenant_id: str | None = None) -> None:
        """Drop cached entries (all, or one tenant's) so the next request re-reads the DB."""
        if tenant_id is None:
            self._cache.clear()
            return
        for digest in [d for d, (info, _) in self._cache.items() if info and info.id == tenant_id]:
            del self._cache[digest]


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
