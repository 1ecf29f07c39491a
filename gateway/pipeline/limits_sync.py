"""Rate limits and requests in flight shared by the gateway processes on one Postgres database.

Each process counts its own requests (RateLimiter, InFlight) and, every `interval_s`, writes its
counts per tenant into `rate_limit_usage` (one multi-row UPSERT) and reads the other processes'
fresh rows in the same transaction; admission adds those to its own counts. No request waits
for the database: a tenant passes its limit by at most what the processes admit before they
hear of each other, about two intervals' traffic (a count reaches the table within one
interval and the other processes within the next). 3 replicas x 2 workers at RPM 600 with a 1 s
interval: ~20 requests over instead of up to 3,000.

A process that stops cleanly deletes its rows; a crashed one's rows count until they are
`FRESH_INTERVALS` intervals old (at least `MIN_FRESH_S`), then no longer (deleted after an
hour). While the database cannot be reached, the others' last counts are used for as long,
then each process counts alone again (a warning says so). SQLite (one process) shares nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.session import FailureLog
from gateway.pipeline.concurrency import InFlight
from gateway.pipeline.limits import RateLimiter

log = logging.getLogger("thriftgate.limits")

DEFAULT_INTERVAL_S = 1.0
FRESH_INTERVALS = 10
MIN_FRESH_S = 10.0
PRUNE_EVERY_S = 60.0

_WRITE = text(
    "INSERT INTO rate_limit_usage (process_id, tenant_id, requests, tokens, in_flight, updated_at)"
    " SELECT :process, u.t, u.r, u.k, u.f, now()"
    " FROM unnest(CAST(:tenants AS text[]), CAST(:requests AS float8[]),"
    " CAST(:tokens AS float8[]), CAST(:in_flight AS int[])) AS u(t, r, k, f)"
    " ON CONFLICT (process_id, tenant_id) DO UPDATE SET requests = EXCLUDED.requests,"
    " tokens = EXCLUDED.tokens, in_flight = EXCLUDED.in_flight, updated_at = EXCLUDED.updated_at"
)
_DROP = text(
    "DELETE FROM rate_limit_usage"
    " WHERE process_id = :process AND tenant_id = ANY(CAST(:tenants AS text[]))"
)
_READ = text(
    "SELECT tenant_id, sum(requests), sum(tokens), sum(in_flight) FROM rate_limit_usage"
    " WHERE process_id <> :process AND updated_at > now() - make_interval(secs => :fresh)"
    " GROUP BY tenant_id"
)
_PRUNE = text("DELETE FROM rate_limit_usage WHERE updated_at < now() - interval '1 hour'")


class SharedLimits:
    def __init__(
        self,
        engine: AsyncEngine,
        limiter: RateLimiter,
        in_flight: InFlight,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self.engine = engine
        self.limiter = limiter
        self.in_flight = in_flight
        self.interval_s = interval_s
        self.fresh_s = max(MIN_FRESH_S, FRESH_INTERVALS * interval_s)
        self.process_id = uuid.uuid4().hex
        self._written: set[str] = set()  # tenants with a row of this process's
        self._heard_at: float | None = None  # monotonic time of the last successful sync
        self._pruned_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._down = FailureLog(
            log, "sharing rate-limit counts with the other processes (each counts alone)"
        )

    @property
    def enabled(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def start(self) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self._run(), name="rate-limit-sync")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sync()
                self._down.succeeded()
            except Exception:
                self._down.failed()
                heard = self._heard_at
                if heard is None or time.monotonic() - heard > self.fresh_s:
                    self._apply({})  # the others' counts are too old to hold anyone to

    async def sync(self) -> None:
        """Write this process's counts and read the others' (one transaction)."""
        usage = self.limiter.usage()
        flight = self.in_flight.counts()
        rows = {
            t: (*usage.get(t, (0.0, 0.0)), flight.get(t, 0)) for t in usage.keys() | flight.keys()
        }
        live = {t: row for t, row in rows.items() if row[0] >= 0.01 or row[1] >= 0.5 or row[2]}
        gone = sorted(self._written - live.keys())
        now = time.monotonic()
        async with self.engine.begin() as conn:
            if live:
                names = sorted(live)
                await conn.execute(
                    _WRITE,
                    {
                        "process": self.process_id,
                        "tenants": names,
                        "requests": [float(live[t][0]) for t in names],
                        "tokens": [float(live[t][1]) for t in names],
                        "in_flight": [int(live[t][2]) for t in names],
                    },
                )
            if gone:
                await conn.execute(_DROP, {"process": self.process_id, "tenants": gone})
            result = await conn.execute(_READ, {"process": self.process_id, "fresh": self.fresh_s})
            others = {r[0]: (float(r[1]), float(r[2]), int(r[3])) for r in result}
            if now - self._pruned_at >= PRUNE_EVERY_S:
                self._pruned_at = now
                await conn.execute(_PRUNE)
        self._written = set(live)
        self._heard_at = now
        self._apply(others)

    def _apply(self, others: dict[str, tuple[float, float, int]]) -> None:
        self.limiter.others_requests = {t: v[0] for t, v in others.items() if v[0] > 0}
        self.limiter.others_tokens = {t: v[1] for t, v in others.items() if v[1] > 0}
        self.in_flight.others = {t: v[2] for t, v in others.items() if v[2] > 0}

    async def aclose(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._task = None
        try:  # the others stop counting this process's requests at once
            async with asyncio.timeout(5), self.engine.begin() as conn:
                await conn.execute(
                    text("DELETE FROM rate_limit_usage WHERE process_id = :process"),
                    {"process": self.process_id},
                )
        except Exception as exc:  # they stop counting them once the rows are old
            log.warning("removing this process's rate-limit counts failed: %r", exc)
