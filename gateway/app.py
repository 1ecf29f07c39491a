"""The FastAPI app factory and its lifespan; nothing else."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI

from gateway.api import admin, dashboard, health, metrics, openai, responses
from gateway.api.errors import install_error_handlers
from gateway.api.fast_lane import FastLane
from gateway.api.guards import SizeGuard
from gateway.metrics import worker_exiting
from gateway.providers.litellm_adapter import quiet_litellm_logs
from gateway.services import Services
from gateway.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            from gateway.db.migrate import upgrade_head

            await upgrade_head(settings.database_url)
        services = await Services.start(settings)
        app.state.services = services
        await _hint_first_steps(services)
        try:
            yield
        finally:
            await services.aclose()
            worker_exiting()  # multiprocess metrics: its live gauges stop counting

    app = FastAPI(
        title="thriftgate",
        version="0.1.0",
        description="Cost-optimizing OpenAI-compatible LLM gateway.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    if settings.fast_lane:
        # The hot POST routes skip the framework stack (fast_lane.py).
        app.add_middleware(FastLane)
    # Added last, so outermost: header and body limits hold for every route, fast lane included.
    app.add_middleware(
        SizeGuard,
        max_header_bytes=settings.max_header_bytes,
        max_body_bytes=settings.max_body_bytes,
        read_timeout_s=settings.request_read_timeout_s,
    )
    app.include_router(openai.router)
    app.include_router(responses.router)
    app.include_router(admin.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(dashboard.router)
    return app


async def _hint_first_steps(services: Services) -> None:
    """A first run has no tenants: say how to get a key (never print one)."""
    from sqlalchemy import func, select

    from gateway.db.models import Tenant

    try:
        async with services.engine.connect() as conn:
            count = (await conn.execute(select(func.count()).select_from(Tenant))).scalar_one()
    except Exception:  # the database may be down at start; serving goes on regardless
        return
    if count == 0:
        logging.getLogger("thriftgate").info(
            "no tenants yet: create one with `thriftgate tenant create NAME`, then "
            "`thriftgate key create NAME` prints its API key once; models served: %s",
            ", ".join(services.catalog.models()) or "none (set THRIFTGATE_CONFIG)",
        )


class UtcFormatter(logging.Formatter):
    """Log times in UTC, marked `Z` (2026-11-25T12:42:02.762Z), as the ledger, the reports and
    the dashboard give them: on a server whose TZ is not UTC they were local times with no
    zone, which no request's `created_at` matched and which repeat when daylight saving ends."""

    converter = staticmethod(time.gmtime)
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and worker processes: settings from the environment."""
    settings = Settings()
    handler = logging.StreamHandler()
    handler.setFormatter(UtcFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
    # Not even at THRIFTGATE_LOG_LEVEL=debug: litellm would log every call's provider key.
    quiet_litellm_logs()
    quiet_database_driver_logs()
    return create_app(settings)


# Loggers that at DEBUG write every statement's parameters: prompts, answers, key hashes.
DRIVER_LOGGERS = ("aiosqlite", "asyncpg", "sqlalchemy.engine", "sqlalchemy.pool")
# httpx logs every request's full URL at INFO: a webhook's token (a Slack URL is a secret), a
# provider key some APIs take in the query (Gemini's `?key=`).
HTTP_CLIENT_LOGGERS = ("httpx", "httpcore")


def quiet_database_driver_logs() -> None:
    """Not even at THRIFTGATE_LOG_LEVEL=debug: the database drivers stay at INFO or above,
    the HTTP clients at WARNING."""
    for name in DRIVER_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)
    for name in HTTP_CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
