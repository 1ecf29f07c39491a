"""Everything long-lived, built once in the app lifespan and closed when it exits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import config_checks
from gateway.accounting import tenant_deletion
from gateway.accounting.budget_alerts import BudgetAlerts
from gateway.accounting.budgets import BudgetBook
from gateway.accounting.ledger import LedgerWriter
from gateway.accounting.retention import LedgerPruner
from gateway.accounting.settling import Settling
from gateway.cache.response_cache import CacheConfig, ResponseCache
from gateway.db.session import create_engine
from gateway.metrics import GatewayMetrics
from gateway.pipeline.account import AccountStage
from gateway.pipeline.auth import KeyStore
from gateway.pipeline.cache import CacheStage
from gateway.pipeline.compress import create_compress_stage
from gateway.pipeline.concurrency import InFlight
from gateway.pipeline.context import Stage
from gateway.pipeline.dispatch import Dispatcher
from gateway.pipeline.limits import BudgetStage, RateLimiter, RateLimitStage
from gateway.pipeline.limits_sync import SharedLimits
from gateway.pipeline.pipeline import Pipeline
from gateway.pipeline.responses_items import ItemStore, ResponsesItemStage, stage_settings
from gateway.pipeline.route import RouteStage
from gateway.providers.registry import ProviderRegistry
from gateway.routing.catalog import Catalog
from gateway.routing.engine_load import EngineLoadWatcher
from gateway.routing.route_metrics import RouterMetrics
from gateway.routing.router import Router, RouterTuning
from gateway.routing.stats_store import RouterStatsStore
from gateway.settings import FileConfig, Settings

log = logging.getLogger("thriftgate")


@dataclass
class Services:
    settings: Settings
    file_config: FileConfig
    engine: AsyncEngine
    catalog: Catalog
    providers: ProviderRegistry
    keys: KeyStore
    budgets: BudgetBook
    limiter: RateLimiter
    ledger: LedgerWriter
    metrics: GatewayMetrics
    pipeline: Pipeline
    cache: ResponseCache | None = None
    # Optional components other stages register (cache, router, ...), closed in reverse order.
    closers: list[Any] = field(default_factory=list)
    router: Router | None = None
    response_items: ItemStore | None = None  # output items of /v1/responses replies

    @classmethod
    async def start(cls, settings: Settings) -> Services:
        file_config = settings.file_config()
        config_checks.check(file_config)  # before anything is started that would need closing
        engine = create_engine(settings.database_url)
        catalog = Catalog.build(file_config.deployments)
        providers = ProviderRegistry()
        keys = KeyStore(engine, ttl_s=settings.key_cache_ttl_s)
        settling = Settling()  # shared: the ledger credits what the budget check may count
        budgets = BudgetBook(engine, settling, reservation_ttl_s=settings.budget_reservation_ttl_s)
        limiter = RateLimiter()
        in_flight = InFlight()
        metrics = GatewayMetrics()
        ledger = LedgerWriter(
            engine,
            settings.spool_dir,
            flush_interval_s=settings.ledger_flush_interval_s,
            settling=settling,
        )
        cache = await ResponseCache.start(
            engine,
            CacheConfig(
                semantic=settings.cache_semantic,
                model_cache_dir=settings.cache_model_dir,
                embed_threads=settings.cache_embed_threads,
                poll_interval_s=settings.cache_poll_interval_s,
            ),
        )
        router = Router(
            catalog,
            auto_models=file_config.auto.models,
            tuning=RouterTuning.from_config(file_config.routing),
        )
        route_metrics = RouterMetrics(metrics.registry, router)
        router_stats = RouterStatsStore(
            engine, router, interval_s=file_config.routing.stats_flush_interval_s
        )
        response_items = ItemStore(engine, **stage_settings(settings))
        stages: list[Stage] = [
            # first: every other stage sees the body with its item references resolved
            ResponsesItemStage(response_items),
            AccountStage(catalog, ledger, metrics, effective_price=router.effective_price),
            rate_limits := RateLimitStage(limiter, in_flight),
            CacheStage(
                cache,
                catalog,
                enabled_default=file_config.tenant_defaults.cache,
                compress_default=file_config.tenant_defaults.compression,
            ),
            BudgetStage(
                budgets,
                catalog,
                fail_open=settings.budget_db_down_policy == "fail-open",
                router=router,
                uncapped_completion=settings.budget_uncapped_completion_tokens,
            ),
            create_compress_stage(catalog, file_config),
            RouteStage(router, route_metrics),
        ]
        pipeline = Pipeline(
            catalog=catalog,
            file_config=file_config,
            stages=stages,
            dispatcher=Dispatcher(providers, router, route_metrics),
        )
        services = cls(
            settings=settings,
            file_config=file_config,
            engine=engine,
            catalog=catalog,
            providers=providers,
            keys=keys,
            budgets=budgets,
            limiter=limiter,
            ledger=ledger,
            metrics=metrics,
            pipeline=pipeline,
            cache=cache,
        )
        services.closers.append(cache)
        await response_items.start()
        services.closers.append(response_items)
        services.router = router
        services.response_items = response_items
        providers.warm(list(catalog.deployments.values()))
        local_deps = [d for d in catalog.deployments.values() if d.provider == "local"]
        if local_deps:
            # Load local models now, not inside the first request (LocalProvider.preload).
            preload = getattr(providers.for_deployment(local_deps[0]), "preload", None)
            if preload is not None:
                preload(local_deps)
        await ledger.start()
        await router_stats.start()  # warm from what earlier processes learned
        services.closers.append(router_stats)
        engine_loads = EngineLoadWatcher(router)
        if engine_loads.watch(catalog.deployments.values(), providers.for_deployment):
            await engine_loads.start()  # local engines report queue depth and tokens/s
            services.closers.append(engine_loads)
        shared_limits = SharedLimits(
            engine, limiter, in_flight, interval_s=settings.rate_limit_sync_interval_s
        )
        await shared_limits.start()  # RPM/TPM and requests in flight across processes
        if shared_limits.enabled:
            rate_limits.wait_sync = shared_limits.wait
        services.closers.append(shared_limits)
        await keys.start()  # cross-replica revocation (LISTEN/NOTIFY on Postgres)
        services.closers.append(keys)
        pruner = LedgerPruner(
            engine,
            ledger_retention_days=settings.ledger_retention_days,
            hourly_rollup_retention_days=settings.rollup_hourly_retention_days,
            interval_s=settings.retention_interval_s,
        )
        await pruner.start()  # old ledger rows (when retention is set), ended counters
        services.closers.append(pruner)
        if settings.budget_alert_webhook_url is not None:
            secret = settings.budget_alert_secret
            alerts = BudgetAlerts(
                engine,
                settings.budget_alert_webhook_url.get_secret_value().strip(),
                thresholds=settings.budget_alert_percentages,
                secret=secret.get_secret_value() if secret is not None else None,
                interval_s=settings.budget_alert_interval_s,
            )
            await alerts.start()
            services.closers.append(alerts)
        return services

    async def delete_tenant(self, tenant_id: str) -> dict[str, Any]:
        """Delete a tenant (`tenant_deletion`: one transaction), then forget it here at once:
        its cached keys (and, by NOTIFY, other replicas'), budget state, in-memory cache."""
        result = await tenant_deletion.delete_tenant(self.engine, tenant_id)
        await self.keys.invalidate_everywhere(tenant_id)
        self.budgets.forget(tenant_id)
        if self.cache is not None:  # the transaction deleted its rows and recorded the purge
            await self.cache.forget_tenant(tenant_id)
        return result

    async def aclose(self) -> None:
        """Close everything, in CLOSE_TIMEOUT_S at most: a database that does not answer
        must not hold the process (the ledger's rows stay in the spool for the next start)."""
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        for closer in [*reversed(self.closers), self.ledger, self.budgets, self.providers]:
            await _close_by(closer.aclose(), type(closer).__name__, deadline)
        await _close_by(self.engine.dispose(), "the database engine", deadline)


# A stalled database (a partition, a failover in progress) held `serve` after SIGTERM until it
# answered again: each closer's writes (cache entries, Responses items, router statistics, the
# ledger) waited out asyncpg's 60 s connect timeout in turn, or for ever on a stalled
# connection, and a second Ctrl-C does not interrupt an application's shutdown.
CLOSE_TIMEOUT_S = 15.0
MIN_CLOSE_S = 1.0  # what each step gets once the deadline has passed (closing HTTP sessions)


async def _close_by(closing: Coroutine[Any, Any, None], name: str, deadline: float) -> None:
    task = asyncio.ensure_future(closing)
    await asyncio.wait({task}, timeout=max(deadline - time.monotonic(), MIN_CLOSE_S))
    if not task.done():
        log.warning("closing %s: gave up after the shutdown's %g s", name, CLOSE_TIMEOUT_S)
        # Not awaited: a closer awaiting its own cancelled tasks may swallow this cancel
        # (wait_for waited a minute for one); what is left of it ends with the event loop.
        task.cancel()
    elif not task.cancelled() and task.exception() is not None:
        log.error("closing %s failed", name, exc_info=task.exception())
