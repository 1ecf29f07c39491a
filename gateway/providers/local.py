"""`provider: local`: the local engine run in-process (no HTTP hop).

One `LocalProvider` serves every local deployment; each deployment's engine is built from its
`options` (model path, speculative settings, dtype...) on first use, loaded once in a worker
thread, and decodes on its own engine thread, so the event loop never blocks on the model.
Engine errors become `gateway.errors` types; `embed` is not offered. Each engine reads GPU
energy through `meter_factory()` (default: NVML, or "unavailable" on a CPU host; tests pass a
double of the hardware counter) and reports it per answer as `usage.energy_joules`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from gateway.errors import InvalidRequest, UpstreamError, UpstreamOverloaded, UpstreamTimeout
from gateway.providers.base import REQUEST_TENANT, Endpoint, Json
from local_engine.backends import ServingBackend, create_backend
from local_engine.config import EngineConfig
from local_engine.energy_attribution import EnergySource
from local_engine.errors import BadEngineRequest, EngineError, EngineOverloaded
from local_engine.model_store import runtime_env
from local_engine.stats import EngineStats

if TYPE_CHECKING:
    from gateway.routing.catalog import Deployment
    from gateway.settings import DeploymentConfig

log = logging.getLogger("thriftgate.local")


def engine_options(config: DeploymentConfig) -> EngineConfig:
    """A deployment's engine settings: its `options`, plus its served name and hardware price
    (raises pydantic's ValidationError; the start-up checks call it too)."""
    options: dict[str, Any] = dict(config.options)
    options.setdefault("served_model_name", config.served_model)
    if config.hardware_usd_per_hour is not None:
        options.setdefault("hardware_usd_per_hour", Decimal(config.hardware_usd_per_hour))
    if isinstance(options.get("speculative"), str):
        options["speculative"] = {"method": options["speculative"]}
    return EngineConfig.model_validate(options)


def engine_config(dep: Deployment) -> EngineConfig:
    """The deployment's engine settings: its `options`, plus its served name and hardware price."""
    try:
        return engine_options(dep.config)
    except ValidationError as exc:
        raise UpstreamError(
            f"deployment {dep.name!r} has invalid local engine options: {exc}", retryable=False
        ) from exc


def max_answer_tokens(dep: Deployment) -> int | None:
    """The longest answer the deployment's engine gives to a request without max_tokens
    (transformers: its default_max_tokens; vLLM: up to the context's end); None if unknown."""
    try:
        cfg = engine_config(dep)
    except UpstreamError:
        return None
    if cfg.backend == "vllm":
        return cfg.vllm.max_model_len - 1
    return min(cfg.default_max_tokens, cfg.max_model_len - 1)


def _translate(exc: EngineError, dep: Deployment) -> Exception:
    if isinstance(exc, BadEngineRequest):
        # the code too: `unsupported_parameter` tells dispatch to try another deployment
        return InvalidRequest(exc.message, param=exc.param, code=exc.code)
    if isinstance(exc, EngineOverloaded):
        return UpstreamOverloaded(f"local deployment {dep.name!r}: {exc.message}")
    return UpstreamError(
        f"local engine {dep.name!r}: {exc.message}", upstream_status=exc.status_code
    )


class LocalProvider:
    def __init__(self, meter_factory: Callable[[], EnergySource] | None = None) -> None:
        runtime_env()  # takes effect only if nothing has loaded torch yet
        self._meter_factory = meter_factory
        self._engines: dict[str, ServingBackend] = {}
        self._starting: dict[str, asyncio.Lock] = {}
        self._preloads: set[asyncio.Task[None]] = set()
        self._failed: set[str] = set()  # deployments whose last model load failed

    def failed(self) -> set[str]:
        """Deployments whose last model load failed (until one succeeds): /readyz says so."""
        return set(self._failed)

    def loading(self, dep: Deployment) -> bool:
        """Whether a request now would wait for the engine to load its model first."""
        return dep.name not in self._engines

    def preloading(self) -> bool:
        """Whether a model load started at startup is still running (/readyz says so)."""
        return bool(self._preloads)

    def preload(self, deps: list[Deployment]) -> None:
        """Start loading the local deployments' engines in the background (call on a running
        loop, at startup), so the first request rarely waits seconds for a model load."""
        for dep in deps:
            if dep.provider == "local" and self.loading(dep):
                task = asyncio.create_task(self._preload(dep), name=f"preload-{dep.name}")
                self._preloads.add(task)
                task.add_done_callback(self._preloads.discard)

    async def _preload(self, dep: Deployment) -> None:
        try:
            await self.engine(dep)
        except Exception as exc:  # the first request will try again and report it
            log.warning("preloading local deployment %s failed: %s", dep.name, exc)

    async def engine(self, dep: Deployment) -> ServingBackend:
        """The deployment's engine, started on first use (concurrent callers wait for one load)."""
        engine = self._engines.get(dep.name)
        if engine is not None:
            return engine
        lock = self._starting.setdefault(dep.name, asyncio.Lock())
        async with lock:
            engine = self._engines.get(dep.name)
            if engine is None:
                meter = self._meter_factory() if self._meter_factory is not None else None
                engine = create_backend(engine_config(dep), meter)
                try:
                    await engine.start()
                except EngineError as exc:
                    self._failed.add(dep.name)
                    raise _translate(exc, dep) from exc
                except Exception as exc:  # weights or tokenizer transformers cannot read
                    self._failed.add(dep.name)
                    # This deployment's fault (a group falls back, the breaker counts it), not a
                    # gateway 500; the folder's path and the library's words go to the log only.
                    log.exception("local deployment %s could not load its model", dep.name)
                    raise UpstreamError(
                        f"local deployment {dep.name!r} could not load its model (the gateway's "
                        "log says why)",
                        upstream_status=503,
                    ) from exc
                self._engines[dep.name] = engine
                self._failed.discard(dep.name)
        return engine

    def stats(self, dep: Deployment) -> EngineStats | None:
        """Live queue depth, TTFT, tokens/s and acceptance; None before the engine has started."""
        engine = self._engines.get(dep.name)
        return engine.stats() if engine is not None else None

    async def complete(
        self, body: Json, dep: Deployment, *, endpoint: Endpoint, timeout_s: float
    ) -> Json:
        engine = await self.engine(dep)
        try:
            async with asyncio.timeout(timeout_s):
                return await engine.complete(
                    endpoint, {**body, "model": dep.served_model}, REQUEST_TENANT.get()
                )
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"Deployment {dep.name!r} did not answer within {timeout_s:g} s."
            ) from exc
        except EngineError as exc:
            raise _translate(exc, dep) from exc

    async def stream(
        self, body: Json, dep: Deployment, *, endpoint: Endpoint, timeout_s: float
    ) -> AsyncIterator[Json]:
        engine = await self.engine(dep)
        chunks = engine.stream(endpoint, {**body, "model": dep.served_model}, REQUEST_TENANT.get())
        try:
            while True:
                try:
                    async with asyncio.timeout(timeout_s):  # per chunk, like a socket read
                        item = await anext(chunks)
                except StopAsyncIteration:
                    return
                yield item
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"Deployment {dep.name!r} stalled for more than {timeout_s:g} s."
            ) from exc
        except EngineError as exc:
            raise _translate(exc, dep) from exc
        finally:
            await chunks.aclose()  # cancels the generation when the caller stops reading

    async def embed(self, body: Json, dep: Deployment, *, timeout_s: float) -> Json:
        raise InvalidRequest(
            f"deployment {dep.name!r} (local engine) does not serve embeddings", param="model"
        )

    async def aclose(self) -> None:
        for task in list(self._preloads):
            task.cancel()
        if self._preloads:
            await asyncio.gather(*self._preloads, return_exceptions=True)
        engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            await engine.aclose()
