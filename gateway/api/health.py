"""Liveness and readiness.

Each also answers HEAD, as many load balancers probe; left out of the OpenAPI schema, which
documents the GETs (a HEAD answer has no body to describe).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from starlette.responses import JSONResponse

from gateway.api.deps import ServicesDep
from gateway.db.migrate import database_revision, schema_behind

router = APIRouter(tags=["health"])

DB_CHECK_TIMEOUT_S = 3.0


@router.get("/healthz")
@router.head("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
@router.head("/readyz", include_in_schema=False)
async def readyz(services: ServicesDep) -> JSONResponse:
    database, behind = await _database(services)
    db_ok = database == "ok"
    # A local model still loading at startup: requests would wait for it (seconds), so a load
    # balancer should not send any yet. A load that failed is not waited for.
    loading = services.providers.loading_models()
    # A model that failed to load answers every request with a 503: ready only while some
    # other deployment can serve (the embedded default has none).
    failed = services.providers.failed_models()
    serving = len(services.catalog.deployments) - len(failed)
    engines = "loading" if loading else "failed" if failed else "ok"
    # Through a transaction-mode pooler (PgBouncer), which the listener detects, statements
    # fail on other clients' prepared statements: the gateway is not ready (`serve` refuses
    # such a URL at start; this is the same truth for one started without that check).
    pooled = services.keys.events.pooled
    ready = db_ok and not behind and not pooled and not loading and serving > 0
    if behind:  # THRIFTGATE_MIGRATE_ON_START=false before `thriftgate migrate` was run
        database = "migrations-pending"
    body = {
        "status": "starting" if loading else "ok" if ready and not failed else "degraded",
        "database": "unsupported-pooler" if pooled else database,
        "ledger_writer": "ok" if services.ledger.healthy else "retrying",
        # cross-worker key revocation: "ttl" while revocations wait for the key-cache TTL
        # (the listener is down)
        "key_events": _key_events(services),
        "local_engines": engines,
        "deployments": len(services.catalog.deployments),
    }
    return JSONResponse(body, status_code=200 if ready else 503)


async def _database(services: ServicesDep) -> tuple[str, bool]:
    """("ok" | "unreachable" | "unresponsive", whether migrations are pending).

    A database that stops answering (a stalled server, a failover in progress, a lock) hung
    the probe for as long as it did; a load balancer's probe timed out without an answer.
    The check is left to finish in the background: awaiting its cancellation could hang too."""

    async def revision() -> str | None:
        async with services.engine.connect() as conn:
            return await database_revision(conn)

    check = asyncio.ensure_future(revision())
    done, _ = await asyncio.wait({check}, timeout=DB_CHECK_TIMEOUT_S)
    if not done:
        check.cancel()
        check.add_done_callback(_consume)
        return "unresponsive", False
    try:
        return "ok", schema_behind(check.result())
    except Exception:
        return "unreachable", False


def _consume(task: asyncio.Future[str | None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" at exit


def _key_events(services: ServicesDep) -> str:
    events = services.keys.events
    if not events.enabled:
        return "ttl"  # SQLite: one process, the TTL only
    return "listening" if events.listening.is_set() else "ttl"
