"""Persist the router's learned statistics in `deployment_stats`, so a restart is not cold.

Loaded once at start; saved every `interval_s` from a background task and once more on close.
Rows are keyed like `Router.snapshot()`: `dep:<deployment>` and `model:<model group>`. With
several workers or replicas each one writes what it learned (last writer wins); a replica that
starts later begins from the freshest of them instead of from the config's hints. A process
writes only the rows whose figures changed since it loaded or last saved them: an idle worker
would otherwise write back, every interval, what it loaded at start over what a busy one learned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.models import DeploymentStat
from gateway.db.session import FailureLog, upsert_insert
from gateway.routing.router import Router

log = logging.getLogger("thriftgate.routing")


class RouterStatsStore:
    def __init__(self, engine: AsyncEngine, router: Router, *, interval_s: float = 30.0) -> None:
        self.engine = engine
        self.router = router
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._save_log = FailureLog(log, "saving router statistics")  # not every 30 s
        # each row's figures as this process last loaded or saved them (without the age)
        self._written: dict[str, dict[str, Any]] = {}

    async def load(self) -> int:
        """Restore what an earlier process learned; a database error leaves the router cold."""
        query = select(DeploymentStat.deployment, DeploymentStat.stats)
        try:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            snapshot = {key: stats for key, stats in rows if isinstance(stats, dict)}
            loaded = self.router.restore(snapshot)
        except Exception:
            log.warning("could not load router statistics; starting cold", exc_info=True)
            loaded = -1
        # what this process starts from is no news: only what it learns from now on is written
        self._written = {key: _figures(state) for key, state in self.router.snapshot().items()}
        if loaded < 0:
            return 0
        log.info("router statistics loaded for %d deployments/models", loaded)
        return loaded

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
            {"deployment": key[:200], "stats": state, "updated_at": now}
            for key, (state, _) in changed.items()
        ]
        table = DeploymentStat.__table__
        assert isinstance(table, Table)
        stmt = upsert_insert(self.engine.dialect.name, table).values(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.deployment],
            set_={"stats": stmt.excluded.stats, "updated_at": stmt.excluded.updated_at},
        )
        async with self.engine.begin() as conn:
            await conn.execute(stmt)
        for key, (_, figures) in changed.items():
            self._written[key] = figures
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


def _figures(state: dict[str, Any]) -> dict[str, Any]:
    """A row's learned figures without `observed_at`, which is recomputed from the clocks at
    every snapshot and so differs between two snapshots of the same figures."""
    return {k: v for k, v in state.items() if k != "observed_at"}
