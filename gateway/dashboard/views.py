"""Shapes query results for the templates: number formats and the charts' JSON payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway.accounting.pricing import usd_text
from gateway.dashboard.queries import JOULES_PER_WH, SERIES_TENANTS, Figures, Overview

# At most this many tenants get their own colour in the stacked chart; the rest are "other".
MAX_SERIES = SERIES_TENANTS
# Below this, `usd` shows significant digits instead of four decimals.
SMALL_USD = Decimal("0.0001")


def usd(value: Decimal | float | int | None) -> str:
    """Dollars for people: cents for a dollar or more, four decimals below a dollar, and two
    significant digits below a ten-thousandth (a cheap request costs a few millionths: "$0.0000"
    read as free, which only "$0.00" means). The sign goes before the dollar sign."""
    if value is None:
        return "n/a"
    v = Decimal(str(value))
    if v == 0:
        return "$0.00"
    sign, v = ("-" if v < 0 else ""), abs(v)
    if v >= 1:
        return f"{sign}${v:,.2f}"
    if v >= SMALL_USD:
        return f"{sign}${v:.4f}"
    return f"{sign}${v:.{1 - v.adjusted()}f}"


def pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}%"


def count(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def energy(fig: Figures) -> str:
    """Tokens per watt-hour where GPU energy was measured; says so where it was not."""
    if not fig.energy_measured:
        return "not measured"
    per_wh = fig.tokens_per_wh
    return "n/a" if per_wh is None else f"{per_wh:,.0f} tok/Wh"


def energy_note(fig: Figures) -> str:
    """The hover text behind `energy`: what the figure covers."""
    if not fig.energy_measured:
        return "No GPU energy recorded for these requests (cloud, cache hits, or no NVML)."
    return (
        f"{fig.energy_completion_tokens:,} generated tokens over "
        f"{fig.energy_joules / JOULES_PER_WH:,.3f} Wh, from {fig.energy_requests:,} of "
        f"{fig.requests:,} requests with measured GPU energy"
    )


def exact(value: Decimal) -> str:
    """The exact figure for a `data-value` attribute (the browser tests compare it with SQL)."""
    return usd_text(value)


def plain(value: str | Decimal | None) -> str:
    """A stored amount for a form field: `60.0000000000` -> `60`; None -> empty."""
    if value is None or value == "":
        return ""
    return exact(Decimal(str(value)))


FILTERS = {
    "usd": usd,
    "pct": pct,
    "count": count,
    "ms": ms,
    "exact": exact,
    "plain": plain,
    "energy": energy,
    "energy_note": energy_note,
}


def _named(names: dict[str, str], tenant_id: str) -> str:
    return names.get(tenant_id, tenant_id[:8])


def spend_chart(ov: Overview, names: dict[str, str]) -> dict[str, Any]:
    """Stacked bars: spend per bucket, one series per tenant (largest first)."""
    totals = {tid: sum(values, Decimal(0)) for tid, values in ov.spend_series.items()}
    order = sorted(totals, key=lambda t: (-totals[t], _named(names, t)))
    datasets = [
        {"label": _named(names, tid), "data": [float(v) for v in ov.spend_series[tid]]}
        for tid in order[:MAX_SERIES]
    ]
    rest = order[MAX_SERIES:]
    others = len(rest) + ov.other_tenants
    if others:
        other = [
            sum((ov.spend_series[t][i] for t in rest), Decimal(0))
            + (ov.other_spend[i] if ov.other_spend else Decimal(0))
            for i in range(len(ov.labels))
        ]
        datasets.append(
            {
                "label": f"{others:,} other tenant{'' if others == 1 else 's'}",
                "data": [float(v) for v in other],
            }
        )
    return {"labels": ov.labels, "datasets": datasets}


def ranked_chart(rows: list[tuple[str, Figures]], empty_label: str) -> dict[str, Any]:
    return {
        "labels": [name or empty_label for name, _ in rows],
        "data": [float(f.cost_usd) for _, f in rows],
    }


def savings_chart(totals: Figures) -> dict[str, Any]:
    """Where the counterfactual cost went: what was paid and what each technique saved."""
    m = totals.money
    return {
        "labels": ["Paid", "Saved by cache", "Saved by compression", "Saved by routing"],
        "data": [
            float(m["cost_usd"]),
            float(m["saved_cache_usd"]),
            float(m["saved_compression_usd"]),
            float(m["saved_routing_usd"]),
        ],
        "counterfactual": float(totals.counterfactual_usd),
    }


def overview_charts(ov: Overview, names: dict[str, str]) -> dict[str, Any]:
    return {
        "spend": spend_chart(ov, names),
        "byModel": ranked_chart(ov.by_model, "(none)"),
        "byDeployment": ranked_chart(ov.by_deployment, "(not dispatched)"),
        "savings": savings_chart(ov.totals),
    }


def key_rows(keys: list[dict[str, Any]], now: datetime | None = None) -> list[dict[str, Any]]:
    """Each key (as `tenants.key_dict` gives it) with its `state` for the tenant page: "active",
    "revoking" (revoked after a grace period that has not ended: `until` says when), "revoked",
    "expired", or "expiring" (`until`: its expiry)."""
    now = now or datetime.now(UTC)
    rows = []
    for key in keys:
        revoked = _when(key.get("revoked_at"))
        expires = _when(key.get("expires_at"))
        if revoked is not None and revoked <= now:
            state, until = "revoked", None
        elif expires is not None and expires <= now:
            state, until = "expired", None
        elif revoked is not None and (expires is None or revoked < expires):
            state, until = "revoking", key["revoked_at"]
        elif expires is not None:
            state, until = "expiring", key["expires_at"]
        else:
            state, until = "active", None
        rows.append({**key, "state": state, "until": until})
    return rows


def _when(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None
