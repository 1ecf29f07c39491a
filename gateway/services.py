"""Everything long-lived, built once in the app lifespan and closed when it exits."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.budgets import BudgetBook
from gateway.accounting.ledger import LedgerWriter
from gateway.db.session import create_engine
from gateway.metrics import GatewayMetrics
from gateway.pipeline.account import AccountStage
from gateway.pipeline.auth import KeyStore
from gateway.pipeline.compress import create_compress_stage
from gateway.pipeline.context import Stage
from gateway.pipeline.dispatch import Dispatcher
from gateway.pipeline.limits import LimitsStage, RateLimiter
from gateway.pipeline.pipeline import Pipeline
from gateway.pipeline.route import RouteStage
from gateway.providers.registry import ProviderRegistry
from gateway.routing.catalog import Catalog
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
    # Optional components other stages register (cache, router, ...), closed in reverse order.
    closers: list[Any] = field(default_factory=list)

    @classmethod
    async def start(cls, settings: Settings) -> Services:
        file_config = settings.file_config()
        engine = create_engine(settings.database_url)
        catalog = Catalog.build(file_config.deployments)
        providers = ProviderRegistry()
        keys = KeyStore(engine, ttl_s=settings.key_cache_ttl_s)
        budgets = BudgetBook(engine)
        limiter = RateLimiter()
        metrics = GatewayMetrics()
        ledger = LedgerWriter(
            engine, settings.spool_dir, flush_interval_s=settings.ledger_flush_interval_s
        )
        stages: list[Stage] = [
            AccountStage(catalog, ledger, metrics),
            LimitsStage(
                limiter, budgets, catalog, fail_open=settings.budget_db_down_policy == "fail-open"
            ),
            create_compress_stage(catalog, file_config),
            RouteStage(),
        ]
        pipeline = Pipeline(
            keys=keys,
            catalog=catalog,
            file_config=file_config,
            stages=stages,
            dispatcher=Dispatcher(providers),
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
        )
        providers.warm(list(catalog.deployments.values()))
        await ledger.start()
        return services

    async def aclose(self) -> None:
        for closer in reversed(self.closers):
            try:
                await closer.aclose()
            except Exception:
                log.exception("closing %s failed", type(closer).__name__)
        await self.ledger.aclose()
        await self.providers.aclose()
        await self.engine.dispose()
