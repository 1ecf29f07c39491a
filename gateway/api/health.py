"""Liveness and readiness.

Each also answers HEAD, as many load balancers probe; left out of the OpenAPI schema, which
documents the GETs (a HEAD answer has no body to describe).
"""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text
from starlette.responses import JSONResponse

from gateway.api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
@router.head("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
@router.head("/readyz", include_in_schema=False)
async def readyz(services: ServicesDep) -> JSONResponse:
    db_ok = True
    try:
        async with services.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        db_ok = False
    # A local model still loading at startup: requests would wait for it (seconds), so a load
    # balancer should not send any yet. A load that failed is not waited for.
    loading = services.providers.loading_models()
    body = {
        "status": "starting" if loading else "ok" if db_ok else "degraded",
        "database": "ok" if db_ok else "unreachable",
        "ledger_writer": "ok" if services.ledger.healthy else "retrying",
        "local_engines": "loading" if loading else "ok",
        "deployments": len(services.catalog.deployments),
    }
    return JSONResponse(body, status_code=200 if db_ok and not loading else 503)
