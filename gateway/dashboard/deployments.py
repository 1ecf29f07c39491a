"""The deployments table: price, share of traffic and observed latency from the ledger, and the
router's live view (predicted latency, breaker state) when the gateway runs one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.pricing import Price, usd_text
from gateway.dashboard.queries import CACHE_HITS, Figures
from gateway.dashboard.windows import Window
from gateway.db.models import UsageLedger
from gateway.routing.catalog import Catalog

L = UsageLedger.__table__.c
# Percentiles read raw ledger rows, so they look at a recent slice only (index on created_at).
PERCENTILE_WINDOW = timedelta(hours=24)
# The request the router is asked to predict for: a typical chat turn.
PROBE_PROMPT_TOKENS = 500


@dataclass
class DeploymentRow:
    name: str
    model: str
    provider: str
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    price_source: str
    requests: int
    share_pct: float | None
    cost_usd: Decimal
    errors: int
    mean_latency_ms: float | None
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    predicted_ms: float | None
    predicted_high_ms: float | None
    breaker: str | None
    figures: Figures  # the ledger's sums for this deployment (energy, for tokens per Wh)
    # its long-context prices, as "above 200,000 prompt tokens: 2.5 / 15" (each its own line)
    long_context: tuple[str, ...] = ()


async def latency_percentiles(
    engine: AsyncEngine, window: Window
) -> dict[str, tuple[float, float]]:
    """p50 and p95 of dispatched, successful requests per deployment over the last 24 h."""
    since = max(window.since, window.now - PERCENTILE_WINDOW)
    if engine.dialect.name != "postgresql":
        return await _percentiles_in_python(engine, since)
    pct = func.percentile_cont(0.5).within_group(L.latency_ms)
    p95 = func.percentile_cont(0.95).within_group(L.latency_ms)
    stmt = (
        select(L.deployment, pct.label("p50"), p95.label("p95"))
        .where(
            L.created_at >= since,
            L.status_code < 400,
            L.cache_status.not_in(CACHE_HITS),
            L.deployment.is_not(None),
        )
        .group_by(L.deployment)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return {r.deployment: (float(r.p50), float(r.p95)) for r in rows}


# SQLite (the embedded default) has no percentile_cont: its latencies are read and ranked here.
# An embedded gateway serves a few requests a second, so a day is well under this bound.
SQLITE_PERCENTILE_ROWS = 200_000


async def _percentiles_in_python(
    engine: AsyncEngine, since: datetime
) -> dict[str, tuple[float, float]]:
    stmt = (
        select(L.deployment, L.latency_ms)
        .where(
            L.created_at >= since,
            L.status_code < 400,
            L.cache_status.not_in(CACHE_HITS),
            L.deployment.is_not(None),
            L.latency_ms.is_not(None),
        )
        .order_by(L.created_at.desc())
        .limit(SQLITE_PERCENTILE_ROWS)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    by_dep: dict[str, list[float]] = {}
    for dep, ms in rows:
        by_dep.setdefault(dep, []).append(float(ms))
    out = {}
    for dep, values in by_dep.items():
        values.sort()
        out[dep] = (percentile_cont(values, 0.5), percentile_cont(values, 0.95))
    return out


def percentile_cont(ordered: list[float], q: float) -> float:
    """Postgres' percentile_cont: linear interpolation between the two nearest ranks."""
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def live_view(
    router: Any, catalog: Catalog, name: str
) -> tuple[float | None, float | None, str | None]:
    """(expected ms, tail ms, breaker state) from the router, or Nones when there is none.

    The router lands on `Services` separately; it is read duck-typed so the dashboard works
    before and after, and any mismatch shows as "n/a" rather than breaking the page.
    """
    if router is None:
        return None, None, None
    dep = catalog.deployments.get(name)
    breaker: str | None = None
    expected = high = None
    try:
        breaker = str(router.breaker_state(name))
    except Exception:
        breaker = None
    try:
        estimate = router.completion_estimate(dep.model if dep else name, None)
        _, prediction = router.predict(dep, PROBE_PROMPT_TOKENS, estimate, router.clock())
        expected, high = float(prediction.total_ms), float(prediction.total_high_ms)
    except Exception:
        expected = high = None
    return expected, high, breaker


def table(
    catalog: Catalog,
    router: Any,
    by_deployment: list[tuple[str, Figures]],
    percentiles: dict[str, tuple[float, float]],
) -> list[DeploymentRow]:
    """Configured deployments first (in config order), then names only the ledger knows."""
    figures = dict(by_deployment)
    total = sum(f.requests for name, f in by_deployment if name)
    names = list(catalog.deployments) + sorted(
        n for n in figures if n and n not in catalog.deployments
    )
    out = []
    for name in names:
        dep = catalog.deployments.get(name)
        fig = figures.get(name, Figures())
        expected, high, breaker = live_view(router, catalog, name)
        p50, p95 = percentiles.get(name, (None, None))
        out.append(
            DeploymentRow(
                name=name,
                model=dep.model if dep else "(not configured)",
                provider=dep.provider if dep else "",
                input_per_mtok=dep.price.input_per_mtok if dep else Decimal(0),
                output_per_mtok=dep.price.output_per_mtok if dep else Decimal(0),
                price_source=dep.price_source if dep else "n/a",
                long_context=long_context_lines(dep.price) if dep else (),
                requests=fig.requests,
                share_pct=fig.requests / total * 100 if total else None,
                cost_usd=fig.cost_usd,
                errors=fig.errors,
                mean_latency_ms=fig.mean_latency_ms,
                p50_latency_ms=p50,
                p95_latency_ms=p95,
                predicted_ms=expected,
                predicted_high_ms=high,
                breaker=breaker,
                figures=fig,
            )
        )
    return out


def long_context_lines(price: Price) -> tuple[str, ...]:
    """What a long prompt is billed at, per threshold: every token of it, its answer's too."""
    return tuple(
        f"above {above:,} prompt tokens: {usd_text(p.input_per_mtok)} / "
        f"{usd_text(p.output_per_mtok)}"
        for above, p in price.long_context
    )
