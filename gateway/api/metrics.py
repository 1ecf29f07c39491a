"""Prometheus exposition at /metrics."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from gateway.api.deps import ServicesDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics")
async def metrics(services: ServicesDep) -> Response:
    ledger = services.ledger
    # Every row the database does not have yet: the spool directory's segments (open and
    # closed, every worker's) plus the rows this worker holds in memory because the spool's
    # disk refused them. The open segment alone read 0 through a whole database outage.
    spooled = await run_in_threadpool(ledger.spool.unwritten_rows)
    services.metrics.ledger_pending.set(spooled + len(getattr(ledger, "_held", ())))
    return Response(services.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
