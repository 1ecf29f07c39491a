"""Cross-replica key-cache invalidation over Postgres LISTEN/NOTIFY.

The admin API revokes a key (or changes a tenant) on one replica; that replica drops its own
cache entries and sends `NOTIFY thriftgate_key_events, '<tenant id>'`. Every replica holds one
dedicated connection that LISTENs and drops the tenant's entries when a notification arrives,
so revocation takes effect everywhere within a network round trip. While the listening
connection is down (database restart), the key-cache TTL is the fallback, and the whole cache is
dropped on reconnect because notifications sent meanwhile are lost. SQLite: TTL only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.session import is_sqlite

log = logging.getLogger("thriftgate.auth")

CHANNEL = "thriftgate_key_events"
ALL_TENANTS = "*"
RECONNECT_S = 1.0
PING_S = 5.0


class KeyEvents:
    def __init__(self, engine: AsyncEngine, on_event: Callable[[str | None], None]) -> None:
        self.engine = engine
        self.on_event = on_event  # tenant id, or None for "everything"
        self.enabled = not is_sqlite(str(engine.url))
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self._run(), name="key-events")

    async def publish(self, tenant_id: str | None) -> None:
        """Tell every replica (this one included) to drop cached keys of `tenant_id`."""
        if not self.enabled:
            return
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    text("SELECT pg_notify(:channel, :payload)"),
                    {"channel": CHANNEL, "payload": tenant_id or ALL_TENANTS},
                )
        except Exception as exc:  # other replicas fall back to the key-cache TTL
            log.warning("key invalidation notify failed (%s)", type(exc).__name__)

    def _dsn(self) -> str:
        url = self.engine.url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.on_event(None if payload == ALL_TENANTS else payload)

    async def _run(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn(), timeout=10)
                await conn.add_listener(CHANNEL, self._notified)
                self.on_event(None)  # whatever was sent while we were not listening is lost
                self.listening.set()
                while not conn.is_closed():
                    await asyncio.sleep(PING_S)
                    await asyncio.wait_for(conn.execute("SELECT 1"), timeout=PING_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.listening.is_set():
                    log.warning("key-event listener lost (%s); TTL fallback", type(exc).__name__)
            finally:
                self.listening.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), timeout=2)
            await asyncio.sleep(RECONNECT_S)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
