"""Dashboard sign-in: opaque session tokens kept server-side, each with its own CSRF token.

The browser holds a random 256-bit token in an HttpOnly, SameSite=Strict cookie; the database
holds only its SHA-256, the CSRF token for forms, and an HMAC of the token under the admin key
that signed in, so rotating THRIFTGATE_ADMIN_KEY ends every session. Sessions live in Postgres
(not in process memory) so every worker and replica sees the same sign-ins and sign-outs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.keys import hash_key
from gateway.db.models import DashboardSession, as_utc

COOKIE = "thriftgate_dashboard"
LOGIN_CSRF_COOKIE = "thriftgate_dashboard_login"
SESSION_TTL = timedelta(hours=12)
T = cast(Table, DashboardSession.__table__)


@dataclass(frozen=True, slots=True)
class Session:
    token_hash: str
    csrf_token: str
    expires_at: datetime


def _key_check(admin_key: str, token_hash: str) -> str:
    return hmac.new(
        admin_key.encode("utf-8", "surrogatepass"),
        b"thriftgate-dashboard-session:" + token_hash.encode(),
        hashlib.sha256,
    ).hexdigest()


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two tokens; a missing one never matches."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode(), b.encode())


class SessionStore:
    """Create, look up and end dashboard sessions (one small table, one indexed lookup)."""

    def __init__(self, engine: AsyncEngine, ttl: timedelta = SESSION_TTL) -> None:
        self.engine = engine
        self.ttl = ttl

    async def create(self, admin_key: str) -> tuple[str, Session]:
        """A new session for a browser that proved the admin key: (cookie token, session)."""
        token = secrets.token_urlsafe(32)
        token_hash = hash_key(token)
        now = datetime.now(UTC)
        session = Session(token_hash, secrets.token_urlsafe(32), now + self.ttl)
        async with self.engine.begin() as conn:
            # Expired rows go on every sign-in: the table stays as small as the live sessions.
            await conn.execute(delete(T).where(T.c.expires_at < now))
            await conn.execute(
                insert(T).values(
                    token_hash=token_hash,
                    csrf_token=session.csrf_token,
                    key_check=_key_check(admin_key, token_hash),
                    created_at=now,
                    expires_at=session.expires_at,
                )
            )
        return token, session

    async def lookup(self, token: str | None, admin_key: str) -> Session | None:
        """The live session behind a cookie token, or None (unknown, expired, key rotated)."""
        if not token or len(token) > 128:
            return None
        token_hash = hash_key(token)
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(T).where(T.c.token_hash == token_hash))).first()
        if row is None:
            return None
        expires = as_utc(row.expires_at)
        if expires <= datetime.now(UTC):
            return None
        if not same(row.key_check, _key_check(admin_key, token_hash)):
            return None
        return Session(token_hash, row.csrf_token, expires)

    async def end(self, session: Session) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(T).where(T.c.token_hash == session.token_hash))
