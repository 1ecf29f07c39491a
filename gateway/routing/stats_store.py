"""Persist the router's learned statistics in `deployment_stats`, so a restart is not cold.

Loaded once at start; saved every `interval_s` from a background task and once more on close.
Each process (a replica, or a worker of one) writes its own rows, keyed like `Router.snapshot()`
plus its replica id: `dep:<deployment>#<replica>` and `model:<model group>#<replica>`. A process
that starts merges every process's rows of a key (`stats_merge`: by how much each has learned
and how recent it is), so no replica's learning is written over by another's, as it was when
they shared one row and the last writer won. Once a process writes a key, the rows it merged
for it at start, if unchanged since, are deleted: its own row holds what they held, and the
rows of a key stay about as many as the replicas that learn it. A row without a replica id
(written before) is merged and retired the same way. A process writes only the rows whose
figures changed since it loaded or last saved them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.models import DeploymentStat, as_utc
from gateway.db.session import FailureLog, upsert_insert
from gateway.routing.router import Router
from gateway.routing.stats_merge import Entry, merge_states

log = logging.getLogger("thriftgate.routing")

KEY_MAX = 200  # the column's length
_REPLICA_SUFFIX = re.compile(r"#([0-9a-f]{12})$")


def row_key(key: str, replica: str) -> str:
    """The row of `key` (`dep:<name>`, `model:<group>`) that one process writes."""
    suffix = f"#{replica}"
    return key[: KEY_MAX - len(suffix)] + suffix


def base_key(row: str) -> str:
    """The snapshot key of a row: without its replica id (rows written before have none)."""
    return _REPLICA_SUFFIX.sub("", row)


class RouterStatsStore:
    def __init__(
        self,
        engine: AsyncEngine,
        router: Router,
        *,
        interval_s: float = 30.0,
        replica_id: str | None = None,
    ) -> None:
        self.engine = engine
        self.router = router
        self.interval_s = interval_s
        self.replica_id = replica_id or uuid.uuid4().hex[:12]  # one per process
        # per key, the other rows merged at load (and when they were written): retired once
        # this process writes its own row of the key
        self._merged: dict[str, list[tuple[str, datetime | None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._save_log = FailureLog(log, "saving router statistics")  # not every 30 s
        # each row's figures as this process last loaded or saved them (without the age)
        self._written: dict[str, dict[str, Any]] = {}

    async def load(self) -> int:
        """Restore what earlier and other processes learned, every process's rows of a key
        merged into one; a database error leaves the router cold."""
        query = select(DeploymentStat.deployment, DeploymentStat.stats, DeploymentStat.updated_at)
        self._merged = {}
        try:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            by_key: dict[str, list[tuple[str, dict[str, Any], datetime | None]]] = defaultdict(list)
            whole = self._whole_keys()
            for row, stats, updated_at in rows:
                if isinstance(stats, dict):
                    base = base_key(row)
                    by_key[whole.get(base, base)].append((row, stats, updated_at))
            half_life_s = self.router.tuning.stale_half_life_s
            snapshot = {
                key: merge_states(
                    key, [_entry(s, at) for _, s, at in group], half_life_s=half_life_s
                )
                for key, group in by_key.items()
            }
            loaded = self.router.restore(snapshot)
            self._merged = {key: [(r, at) for r, _, at in g] for key, g in by_key.items()}
        except Exception:
            log.warning("could not load router statistics; starting cold", exc_info=True)
            loaded = -1
        # what this process starts from is no news: only what it learns from now on is written
        self._written = {key: _figures(state) for key, state in self.router.snapshot().items()}
        if loaded < 0:
            return 0
        log.info("router statistics loaded for %d deployments/models", loaded)
        return loaded

    def _whole_keys(self) -> dict[str, str]:
        """The keys this router has, by the cut one a row holds where `row_key` had to shorten
        them (a deployment or model name of over 180 characters): loaded under the cut key,
        which no deployment has, their learning was never restored nor their rows retired."""
        keys = [f"dep:{name}" for name in self.router.latency]
        keys += [f"model:{model}" for model in self.router.catalog.models()]
        return {base_key(row_key(key, self.replica_id)): key for key in keys}

    async def save(self) -> int:
        """Write the rows whose figures changed since this process loaded or saved them."""
        changed = {
            key: (state, figures)
            for key, state in self.router.snapshot().items()
            if self._written.get(key) != (figures := _figures(state))
        }
        if not changed:
            return 0
        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = [
            {"deployment": row_key(key, self.replica_id), "stats": state, "updated_at": now}
            for key, (state, _) in changed.items()
        ]
        table = DeploymentStat.__table__
        assert isinstance(table, Table)
        stmt = upsert_insert(self.engine.dialect.name, table).values(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.deployment],
            set_={"stats": stmt.excluded.stats, "updated_at": stmt.excluded.updated_at},
        )
        # the rows this one now stands for: those merged at load, if no one wrote them since
        retired = [
            (row, at)
            for key in changed
            for row, at in self._merged.get(key, ())
            if row != row_key(key, self.replica_id)
        ]
        col = table.c
        async with self.engine.begin() as conn:
            await conn.execute(stmt)
            for row, at in retired:
                same = col.updated_at.is_(None) if at is None else col.updated_at == at
                await conn.execute(delete(table).where(col.deployment == row, same))
        for key, (_, figures) in changed.items():
            self._written[key] = figures
            self._merged.pop(key, None)
        return len(rows)

    async def start(self) -> None:
        await self.load()
        self._task = asyncio.create_task(self._loop(), name="router-stats")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.save()
                self._save_log.succeeded()
            except Exception:  # a database hiccup must not stop routing
                self._save_log.failed()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.save()
        except Exception:
            log.warning("saving router statistics on shutdown failed", exc_info=True)


def _entry(stats: dict[str, Any], updated_at: datetime | None) -> Entry:
    """A row for merging: its state and when its figures are from (the last observation's
    wall-clock time if it has one, else when it was written)."""
    observed = stats.get("observed_at")
    if (
        isinstance(observed, int | float)
        and not isinstance(observed, bool)
        and math.isfinite(observed)
    ):
        return stats, float(observed)
    return stats, 0.0 if updated_at is None else as_utc(updated_at).timestamp()


def _figures(state: dict[str, Any]) -> dict[str, Any]:
    """A row's learned figures without `observed_at`, which is recomputed from the clocks at
    every snapshot and so differs between two snapshots of the same figures."""
    return {k: v for k, v in state.items() if k != "observed_at"}
