"""Prometheus exposition at /metrics."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from gateway.api.deps import ServicesDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics")
async def metrics(services: ServicesDep) -> Response:
    services.metrics.ledger_pending.set(services.ledger.spool.pending)
    return Response(services.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
