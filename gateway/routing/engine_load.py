"""Feed the router what each local engine reports about its load: queue, running, tokens/s.

Deployments with a `hardware_usd_per_hour` are priced from throughput measured at their current
load (see `local_load.py`). Every `interval_s` this watcher asks each of them how busy it is:
an in-process engine (`provider: local`) through its provider's `stats(dep)`, an engine behind
HTTP through its Prometheus `/metrics` (`thriftgate_engine_queue_depth`,
`..._running_requests`, `..._tokens_per_second`). A deployment that does not answer is simply
left to the gateway's own in-flight count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.routing.catalog import Deployment
from gateway.routing.local_load import EngineLoad
from gateway.routing.router import Router

log = logging.getLogger("thriftgate.routing")

LoadSource = Callable[[], Awaitable[EngineLoad | None]]
PREFIX = "thriftgate_engine_"


def parse_engine_metrics(text: str, observed_at: float) -> EngineLoad | None:
    """The local engine's `/metrics` exposition -> EngineLoad (None without a queue gauge)."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith(PREFIX):
            for sample in family.samples:
                values[sample.name[len(PREFIX) :]] = float(sample.value)
    if "queue_depth" not in values:
        return None
    return EngineLoad(
        queue_depth=int(values["queue_depth"]),
        running=int(values.get("running_requests", 0)),
        decode_tokens_per_s=values.get("tokens_per_second", 0.0),
        observed_at=observed_at,
    )


def stats_to_load(stats: Any, observed_at: float) -> EngineLoad | None:
    """An in-process engine's `EngineStats` (duck-typed: no import of the engine here)."""
    if stats is None:
        return None
    return EngineLoad(
        queue_depth=int(stats.queue_depth),
        running=int(stats.running),
        decode_tokens_per_s=float(stats.tokens_per_s or 0.0),
        observed_at=observed_at,
    )


class EngineLoadWatcher:
    def __init__(self, router: Router, *, interval_s: float = 1.0) -> None:
        self.router = router
        self.interval_s = interval_s
        self.sources: dict[str, LoadSource] = {}
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None

    def watch(self, deps: Iterable[Deployment], provider_for: Callable[[Deployment], Any]) -> int:
        """Register every hardware-priced deployment; returns how many are watched."""
        for dep in deps:
            if dep.config.hardware_usd_per_hour is None:
                continue
            if dep.provider == "local":
                self.sources[dep.name] = self._in_process(dep, provider_for(dep))
            elif dep.config.api_base:
                self.sources[dep.name] = self._over_http(dep.config.api_base)
        return len(self.sources)

    def _in_process(self, dep: Deployment, provider: Any) -> LoadSource:
        async def read() -> EngineLoad | None:
            stats = getattr(provider, "stats", None)
            return stats_to_load(stats(dep), self.router.clock()) if stats else None

        return read

    def _over_http(self, api_base: str) -> LoadSource:
        base = api_base.rstrip("/")
        url = (base[: -len("/v1")] if base.endswith("/v1") else base) + "/metrics"

        async def read() -> EngineLoad | None:
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=self.interval_s)
            response = await self._client.get(url)
            if response.status_code != 200:
                return None
            return parse_engine_metrics(response.text, self.router.clock())

        return read

    async def poll_once(self) -> int:
        reported = 0
        for name, source in self.sources.items():
            try:
                load = await source()
            except Exception:  # an engine that is down is the breaker's business, not ours
                log.debug("engine load of %s unavailable", name, exc_info=True)
                continue
            if load is not None:
                self.router.report_engine_load(name, load)
                reported += 1
        return reported

    async def start(self) -> None:
        if self.sources:
            self._task = asyncio.create_task(self._loop(), name="engine-load")

    async def _loop(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.interval_s)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()
