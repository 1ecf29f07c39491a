"""Cross-replica key-cache invalidation over Postgres LISTEN/NOTIFY.

The admin API revokes a key (or changes a tenant) on one replica; that replica drops its own
cache entries and sends `NOTIFY thriftgate_key_events, '<tenant id>'`. Every replica holds one
dedicated connection that LISTENs and drops the tenant's entries when a notification arrives,
so revocation takes effect everywhere within a network round trip. While the listening
connection is down (database restart), the key-cache TTL is the fallback, and the whole cache is
dropped on reconnect because notifications sent meanwhile are lost. SQLite: TTL only.

Through a pooler in transaction mode (PgBouncer `pool_mode=transaction`) LISTEN registers on
whichever server connection ran it, which then serves other clients: notifications never
arrive. The listener sees it (its backend changes under it: `session.transaction_pooled`) and
says so in one line, instead of looking healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.db.session import asyncpg_dsn, backend_pid, is_sqlite, transaction_pooled

log = logging.getLogger("thriftgate.auth")

CHANNEL = "thriftgate_key_events"
ALL_TENANTS = "*"
RECONNECT_S = 1.0
PING_S = 5.0
POOLED_RETRY_S = 60.0
POOLED = (
    "the database URL reaches Postgres through a pooler in transaction mode (PgBouncer "
    "pool_mode=transaction?): LISTEN does not work through it, so a key revoked or a tenant "
    "changed on one worker is seen by the others only after the key-cache TTL; point "
    "THRIFTGATE_DATABASE_URL at a pool in session mode or at Postgres itself"
)


async def notify(conn: AsyncConnection, tenant_id: str | None) -> None:
    """Tell every replica to drop cached keys of `tenant_id` (None: all) when `conn`'s
    transaction commits (Postgres delivers a NOTIFY at commit, never before)."""
    await conn.execute(
        text("SELECT pg_notify(:channel, :payload)"),
        {"channel": CHANNEL, "payload": tenant_id or ALL_TENANTS},
    )


class TransactionPooled(Exception):
    """The listening connection's backend is not its own (see the module docstring)."""


class KeyEvents:
    def __init__(self, engine: AsyncEngine, on_event: Callable[[str | None], None]) -> None:
        self.engine = engine
        self.on_event = on_event  # tenant id, or None for "everything"
        self.enabled = not is_sqlite(str(engine.url))
        self.listening = asyncio.Event()
        self.pooled = False  # behind a transaction-mode pooler: LISTEN cannot work
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
                await notify(conn, tenant_id)
        except Exception as exc:  # other replicas fall back to the key-cache TTL
            log.warning("key invalidation notify failed (%s)", type(exc).__name__)

    async def _connect(self) -> asyncpg.Connection:
        # `?ssl=prefer` (what `sslmode` becomes) sent as is was a server setting Postgres
        # refused: the listener never connected, and nothing said so.
        dsn, args = asyncpg_dsn(self.engine.url)
        # no named statements: through a pooler they collide with other clients' (and the
        # detection below must get as far as saying so)
        return await asyncpg.connect(dsn, timeout=10, statement_cache_size=0, **args)

    async def _check_own_backend(self, conn: asyncpg.Connection) -> None:
        """Raise TransactionPooled if the listening connection's backend is not its own."""
        other = await self._connect()
        try:
            if await transaction_pooled(conn, other):
                raise TransactionPooled
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(other.close(), timeout=2)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.on_event(None if payload == ALL_TENANTS else payload)

    async def _run(self) -> None:
        failed_before = False
        while True:
            conn: asyncpg.Connection | None = None
            pause = RECONNECT_S
            try:
                conn = await self._connect()
                await conn.add_listener(CHANNEL, self._notified)
                await asyncio.wait_for(self._check_own_backend(conn), timeout=3 * PING_S)
                pid = await asyncio.wait_for(backend_pid(conn), timeout=PING_S)
                self.on_event(None)  # whatever was sent while we were not listening is lost
                if self.pooled or failed_before:
                    log.warning("key-event listener listening again")
                self.pooled = failed_before = False
                self.listening.set()
                while not conn.is_closed():
                    await asyncio.sleep(PING_S)
                    if await asyncio.wait_for(backend_pid(conn), timeout=PING_S) != pid:
                        raise TransactionPooled
            except asyncio.CancelledError:
                raise
            except TransactionPooled:
                if not self.pooled:
                    log.error("key-event listener: %s", POOLED)
                self.pooled = True
                pause = POOLED_RETRY_S
            except Exception as exc:
                if self.listening.is_set():
                    log.warning("key-event listener lost (%s); TTL fallback", type(exc).__name__)
                elif not failed_before:  # it never came up: said once, not every second
                    log.warning(
                        "key-event listener cannot connect (%s: %s); TTL fallback",
                        type(exc).__name__,
                        str(exc).splitlines()[0][:200] if str(exc) else "",
                    )
                failed_before = True
            finally:
                self.listening.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), timeout=2)
            await asyncio.sleep(pause)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
