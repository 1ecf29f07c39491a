"""Rate limits and requests in flight shared by the gateway processes on one Postgres database.

Each process counts its own requests (RateLimiter, InFlight) and, every `interval_s`, writes its
counts per tenant into `rate_limit_usage` (one multi-row UPSERT) and reads the other processes'
fresh rows in the same transaction; admission adds those to its own counts. A request waits
for no round trip unless its tenant is near a limit: one past its process's share of the room
left at the last sync (room / (2 x processes - 1), RateLimiter.past_share) makes the process
sync at once and waits for it (at most `WAIT_S`, one sync for all such requests;
RateLimitStage), so a burst over all processes goes in rounds of shares instead of each
process admitting the whole limit. What is left over
comes from the processes' syncs not being simultaneous (each admits its share of the room it
saw). Measured on 2 cores, RPM 60, 8 threads over 2 serve x 2 workers for 12 s: 77-85
admitted (the old per-process counting: 180); sequential requests over two processes at RPM
30: 31-32 of 90 (old: 60).

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
WAIT_S = 0.5  # the longest a request near its limit waits for one sync

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
        self._wanted = asyncio.Event()  # a tenant near its limit: sync before the tick
        self._started = self._finished = 0  # syncs begun, ended (either way)
        self._ended = asyncio.Event()  # set (and replaced) as each sync ends
        self._failing = False  # the last sync failed: nobody waits for the next
        self._down = FailureLog(
            log, "sharing rate-limit counts with the other processes (each counts alone)"
        )

    @property
    def enabled(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def start(self) -> None:
        if self.enabled:
            self._wanted.set()  # the first at once: the others count this process from now
            self._task = asyncio.create_task(self._run(), name="rate-limit-sync")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), self.interval_s)
            self._wanted.clear()
            self._started += 1
            try:
                await self.sync()
                self._failing = False
                self._down.succeeded()
            except Exception:
                self._failing = True
                self._down.failed()
                heard = self._heard_at
                if heard is None or time.monotonic() - heard > self.fresh_s:
                    self._apply({})  # the others' counts are too old to hold anyone to
            finally:
                self._finished = self._started
                ended, self._ended = self._ended, asyncio.Event()
                ended.set()

    async def wait(self) -> bool:
        """Until a sync begun after this call has ended (one for all the callers meanwhile):
        a request near its tenant's limit is admitted against what the other processes have
        taken, not what they had taken a second ago. False (no more waiting) when syncs fail
        or this one took over `WAIT_S`."""
        if self._task is None or self._task.done() or self._failing:
            return False
        target = self._started + 1
        self._wanted.set()
        try:
            async with asyncio.timeout(WAIT_S):
                while self._finished < target:
                    await self._ended.wait()
        except TimeoutError:
            return False
        return not self._failing

    async def sync(self) -> None:
        """Write this process's counts and read the others' (one transaction)."""
        self.limiter.synced()
        usage = self.limiter.usage()
        flight = self.in_flight.counts()
        rows = {
            t: (*usage.get(t, (0.0, 0.0)), flight.get(t, 0)) for t in usage.keys() | flight.keys()
        }
        live = {t: row for t, row in rows.items() if row[0] >= 0.01 or row[1] >= 0.5 or row[2]}
        live[""] = (0.0, 0.0, 1)  # this process is alive: the others count it in `processes`
        gone = sorted(self._written - live.keys())
        now = time.monotonic()
        async with self.engine.begin() as conn:
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
            processes = others.pop("", (0.0, 0.0, 0))[2] + 1
            if now - self._pruned_at >= PRUNE_EVERY_S:
                self._pruned_at = now
                await conn.execute(_PRUNE)
        self._written = set(live)
        self._heard_at = now
        self.limiter.processes = processes
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
