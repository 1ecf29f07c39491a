"""Aggregate SQL behind the dashboard, over the hourly and daily rollups of the ledger.

A database trigger keeps both rollups in step with the ledger, so these queries read
thousands of rows, not millions; a window in days reads the daily rollup, one in hours the
hourly one. Everything is summed in SQL; Python only shapes the result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.budgets import (
    DEFAULT_RESERVATION_TTL_S,
    live_reserved,
    period_start,
    reservation_epoch,
)
from gateway.dashboard.windows import Unit, Window, label
from gateway.db.models import BudgetCounter, Tenant, UsageRollupDaily, UsageRollupHourly, as_utc

HOURLY = UsageRollupHourly.__table__
DAILY = UsageRollupDaily.__table__
CACHE_HITS = ("hit-exact", "hit-semantic")
WORK_MEM = "32MB"
MONEY_FIELDS = (
    "cost_usd",
    "counterfactual_cost_usd",
    "saved_cache_usd",
    "saved_compression_usd",
    "saved_routing_usd",
)
COUNT_FIELDS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "slo_met",
    "slo_known",
    "cache_hits",
    "dispatched",
    "energy_completion_tokens",
    "energy_requests",
)
JOULES_PER_WH = 3600.0
# Up to this many tenants, budget_use names them in its query; past it, it reads every counter of
# the current periods (three per tenant at most) rather than send one parameter per tenant.
FEW_TENANTS = 1000
# The spend chart draws this many tenants on their own; the others are summed into one series.
SERIES_TENANTS = 8


def rollup(unit: Unit) -> Any:
    """The rollup table whose buckets are `unit` long (columns via `.c`)."""
    return DAILY if unit == "day" else HOURLY


def _measures(r: Any) -> list[Any]:
    return [
        *(func.coalesce(func.sum(r.c[f]), 0).label(f) for f in COUNT_FIELDS),
        *(func.coalesce(func.sum(r.c[f]), 0).label(f) for f in MONEY_FIELDS),
        func.coalesce(func.sum(r.c.latency_ms_sum), 0.0).label("latency_ms_sum"),
        func.coalesce(func.sum(r.c.energy_joules), 0.0).label("energy_joules"),
    ]


@dataclass
class Figures:
    """Sums over a set of rollup rows, plus the ratios a person wants to read."""

    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    slo_met: int = 0
    slo_known: int = 0
    cache_hits: int = 0
    dispatched: int = 0
    latency_ms_sum: float = 0.0
    # Requests whose GPU energy was measured (a local engine reading NVML), and only those.
    energy_requests: int = 0
    energy_completion_tokens: int = 0
    energy_joules: float = 0.0
    money: dict[str, Decimal] = field(
        default_factory=lambda: dict.fromkeys(MONEY_FIELDS, Decimal(0))
    )

    @classmethod
    def of(cls, m: Any) -> Figures:
        fig = cls(
            latency_ms_sum=float(m["latency_ms_sum"] or 0.0),
            energy_joules=float(m["energy_joules"] or 0.0),
        )
        for f in COUNT_FIELDS:
            setattr(fig, f, int(m[f] or 0))
        fig.money = {f: Decimal(str(m[f] or 0)) for f in MONEY_FIELDS}
        return fig

    @property
    def cost_usd(self) -> Decimal:
        return self.money["cost_usd"]

    @property
    def counterfactual_usd(self) -> Decimal:
        return self.money["counterfactual_cost_usd"]

    @property
    def saved_usd(self) -> Decimal:
        return (
            self.money["saved_cache_usd"]
            + self.money["saved_compression_usd"]
            + self.money["saved_routing_usd"]
        )

    @property
    def saved_pct(self) -> float | None:
        cf = self.counterfactual_usd
        return float(self.saved_usd / cf * 100) if cf > 0 else None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cache_hit_rate(self) -> float | None:
        return self.cache_hits / self.requests * 100 if self.requests else None

    @property
    def slo_attainment(self) -> float | None:
        return self.slo_met / self.slo_known * 100 if self.slo_known else None

    @property
    def mean_latency_ms(self) -> float | None:
        return self.latency_ms_sum / self.dispatched if self.dispatched else None

    @property
    def energy_measured(self) -> bool:
        return self.energy_requests > 0

    @property
    def tokens_per_wh(self) -> float | None:
        """Generated tokens per watt-hour over the measured requests; None if none (or 0 J)."""
        if not self.energy_requests or self.energy_joules <= 0:
            return None
        return self.energy_completion_tokens / (self.energy_joules / JOULES_PER_WH)


@dataclass
class Overview:
    window: Window
    totals: Figures
    labels: list[str]
    # tenant_id -> one cost per label, for the SERIES_TENANTS tenants that spent most
    spend_series: dict[str, list[Decimal]]
    by_model: list[tuple[str, Figures]]
    by_deployment: list[tuple[str, Figures]]
    # Every other tenant's spend together, one cost per label, and how many such tenants.
    other_spend: list[Decimal] | None = None
    other_tenants: int = 0


def _period_label(value: Any, unit: Unit) -> str:
    if isinstance(value, datetime):
        return label(as_utc(value), unit)
    text = str(value)  # SQLite: 'YYYY-MM-DD HH:00:00.000000'
    return text[:10] if unit == "day" else text[:13] + ":00"


def _scope(stmt: Select[Any], r: Any, window: Window, tenant_id: str | None) -> Select[Any]:
    stmt = stmt.where(r.c.bucket >= window.since)
    if tenant_id is not None:
        stmt = stmt.where(r.c.tenant_id == tenant_id)
    return stmt


def _ranked(rows: list[Any], key: str) -> list[tuple[str, Figures]]:
    out = [(str(m[key]), Figures.of(m)) for m in rows]
    return sorted(out, key=lambda kv: (-kv[1].cost_usd, -kv[1].requests, kv[0]))


async def overview(engine: AsyncEngine, window: Window, tenant_id: str | None = None) -> Overview:
    """Totals, spend per bucket (per tenant for the biggest few), per model and per deployment.

    Spend per bucket x tenant is read for the SERIES_TENANTS tenants that spent most only: the
    chart shows no more, and at 20k tenants reading every pair (450k rows) took 17 s.
    """
    r = rollup(window.unit)
    keys = {"period": r.c.bucket, "model": r.c.model, "deployment": r.c.deployment}
    sets = {"period": ("period",), "model": ("model",), "deployment": ("deployment",), "total": ()}
    rows: dict[str, list[Any]] = {name: [] for name in sets}
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Room for the hash aggregate in memory (NUMERIC sums are wide); this query only.
            await conn.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
            # One scan of the window, four groupings (GROUPING SETS), told apart by grouping().
            gid = func.grouping(*keys.values()).label("gid")
            named = [c.label(k) for k, c in keys.items()]
            stmt = _scope(select(*named, gid, *_measures(r)), r, window, tenant_id)
            stmt = stmt.group_by(
                func.grouping_sets(*(tuple_(*(keys[k] for k in ks)) for ks in sets.values()))
            )
            by_gid = {_gid(list(keys), ks): name for name, ks in sets.items()}
            for row in (await conn.execute(stmt)).all():
                rows[by_gid[row.gid]].append(row._mapping)
        else:
            for name, ks in sets.items():
                cols = [keys[k].label(k) for k in ks]
                stmt = _scope(select(*cols, *_measures(r)), r, window, tenant_id)
                if cols:
                    stmt = stmt.group_by(*cols)
                rows[name] = [row._mapping for row in (await conn.execute(stmt)).all()]
        top, spenders = await _top_spenders(conn, r, window, tenant_id)
        series_rows: list[Any] = []
        if top:
            stmt = _scope(
                select(r.c.bucket, r.c.tenant_id, func.sum(r.c.cost_usd).label("cost_usd")),
                r,
                window,
                tenant_id,
            ).where(r.c.tenant_id.in_(top))
            series_rows = list((await conn.execute(stmt.group_by(r.c.bucket, r.c.tenant_id))).all())
    labels = [label(b, window.unit) for b in window.buckets()]
    index = {lab: i for i, lab in enumerate(labels)}
    series: dict[str, list[Decimal]] = {tid: [Decimal(0)] * len(labels) for tid in top}
    for row in series_rows:
        i = index.get(_period_label(row.bucket, window.unit))
        if i is not None:
            series[row.tenant_id][i] += Decimal(str(row.cost_usd))
    other: list[Decimal] | None = None
    if spenders > len(top):
        other = [Decimal(0)] * len(labels)
        for m in rows["period"]:
            i = index.get(_period_label(m["period"], window.unit))
            if i is not None:
                other[i] += Decimal(str(m["cost_usd"])) - sum(
                    (s[i] for s in series.values()), Decimal(0)
                )
    totals = Figures.of(rows["total"][0]) if rows["total"] else Figures()
    return Overview(
        window=window,
        totals=totals,
        labels=labels,
        spend_series=series,
        by_model=_ranked(rows["model"], "model"),
        by_deployment=_ranked(rows["deployment"], "deployment"),
        other_spend=other,
        other_tenants=spenders - len(top),
    )


async def _top_spenders(
    conn: Any, r: Any, window: Window, tenant_id: str | None
) -> tuple[list[str], int]:
    """The SERIES_TENANTS tenants with most spend in the window, and how many have any row."""
    spend = func.sum(r.c.cost_usd)
    stmt = _scope(
        select(r.c.tenant_id, func.count().over().label("spenders")), r, window, tenant_id
    )
    stmt = stmt.group_by(r.c.tenant_id).order_by(spend.desc(), r.c.tenant_id)
    found = (await conn.execute(stmt.limit(SERIES_TENANTS))).all()
    return [row.tenant_id for row in found], int(found[0].spenders) if found else 0


async def figures_by(
    engine: AsyncEngine, window: Window, key: str, tenant_ids: list[str] | None = None
) -> list[tuple[str, Figures]]:
    """The window's figures per `key` ('tenant_id', 'model' or 'deployment'), biggest spend
    first; only for `tenant_ids` when given (a page of the tenant list, not all 20k)."""
    r = rollup(window.unit)
    col = r.c[key]
    stmt = _scope(select(col.label(key), *_measures(r)), r, window, None).group_by(col)
    if tenant_ids is not None:
        stmt = stmt.where(r.c.tenant_id.in_(tenant_ids))
    async with engine.connect() as conn:
        rows = [row._mapping for row in (await conn.execute(stmt)).all()]
    return _ranked(rows, key)


def _gid(all_keys: list[str], grouped: tuple[str, ...]) -> int:
    """Postgres grouping(): bit set (first argument highest) for each key NOT grouped on."""
    bits = 0
    for k in all_keys:
        bits = (bits << 1) | (0 if k in grouped else 1)
    return bits


@dataclass
class BudgetUse:
    budget_usd: Decimal | None
    period: str
    period_start: datetime
    spent_usd: Decimal
    reserved_usd: Decimal

    @property
    def used_usd(self) -> Decimal:
        return self.spent_usd + self.reserved_usd

    @property
    def used_pct(self) -> float | None:
        if self.budget_usd is None or self.budget_usd <= 0:
            return None if self.budget_usd is None else 100.0
        return float(self.used_usd / self.budget_usd * 100)

    @property
    def level(self) -> str:
        """'ok', 'warn' (80 % or more used) or 'over' (used up): the colour on the page."""
        pct = self.used_pct
        if pct is None or pct < 80:
            return "ok"
        return "warn" if pct < 100 else "over"


async def budget_use(
    engine: AsyncEngine,
    tenants: list[dict[str, Any]],
    reservation_ttl_s: float = DEFAULT_RESERVATION_TTL_S,
) -> dict[str, BudgetUse]:
    """Each tenant's spend and open reservations in its current budget period."""
    now = datetime.now(UTC)
    epoch = reservation_epoch(reservation_ttl_s, now.timestamp())
    starts = {t["id"]: period_start(t["budget_period"], now) for t in tenants}
    b = BudgetCounter.__table__.c
    found: dict[str, tuple[Decimal, Decimal]] = {}
    if starts:
        # Read by period start (at most three: this month, today, the epoch), each row then
        # matched to its tenant's period here. One (tenant, start) pair of bind parameters per
        # tenant passed asyncpg's 32,767 arguments past 16,383 tenants: the page was a 500.
        stmt = select(
            b.tenant_id,
            b.period_start,
            b.spent_usd,
            b.reserved_usd,
            b.reserved_prev_usd,
            b.reserve_epoch,
        ).where(b.period_start.in_(sorted(set(starts.values()))))
        if len(starts) <= FEW_TENANTS:
            stmt = stmt.where(b.tenant_id.in_(sorted(starts)))
        async with engine.connect() as conn:
            for r in (await conn.execute(stmt)).all():
                start = as_utc(r.period_start)
                if starts.get(r.tenant_id) != start:
                    continue
                reserved = live_reserved(
                    Decimal(str(r.reserved_usd)),
                    Decimal(str(r.reserved_prev_usd)),
                    r.reserve_epoch,
                    epoch,
                )
                found[r.tenant_id] = (Decimal(str(r.spent_usd)), reserved)
    out = {}
    for t in tenants:
        spent, reserved = found.get(t["id"], (Decimal(0), Decimal(0)))
        budget = Decimal(t["budget_usd"]) if t["budget_usd"] is not None else None
        out[t["id"]] = BudgetUse(budget, t["budget_period"], starts[t["id"]], spent, reserved)
    return out


async def tenant_names(engine: AsyncEngine, ids: Iterable[str] | None = None) -> dict[str, str]:
    """Tenant id -> name: of every tenant, or only of `ids` (what one page shows)."""
    t = Tenant.__table__.c
    stmt = select(t.id, t.name)
    if ids is not None:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        stmt = stmt.where(t.id.in_(wanted))
    async with engine.connect() as conn:
        return {r.id: r.name for r in (await conn.execute(stmt)).all()}
