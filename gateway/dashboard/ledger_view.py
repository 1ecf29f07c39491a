"""The dashboard's request log: filtered, paginated ledger rows and a streamed CSV export."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting import reports
from gateway.accounting.reports import ROW_FIELDS, row_dict
from gateway.dashboard.queries import tenant_names as tenant_names_of
from gateway.db.models import UsageLedger, UsageRollupDaily

L = UsageLedger.__table__.c
R = UsageRollupDaily.__table__.c
PAGE_SIZE = 50
CSV_BATCH_ROWS = 500
# Rows formatted between two offers of the GIL to the event loop (~1 ms of work).
GIL_ROWS = 50
CACHE_STATUSES = ("hit-exact", "hit-semantic", "miss", "bypass")
TABLE_COLUMNS = (
    "created_at",
    "tenant_id",
    "model",
    "deployment",
    "status_code",
    "cache_status",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "counterfactual_cost_usd",
    "latency_ms",
    "slo_met",
    "request_id",
)


@dataclass(frozen=True, slots=True)
class LedgerFilter:
    """What the request log shows. `status` is 'ok' (< 400), 'error' (>= 400) or a code.

    `tenant` is what was typed (an id or a name); `tenant_id` the tenant it names, None when it
    names none (then only rows whose tenant id is exactly `tenant` match).
    """

    since: datetime
    tenant: str | None = None
    tenant_id: str | None = None
    model: str | None = None
    deployment: str | None = None
    status: str | None = None
    cache_status: str | None = None

    def query_params(self) -> dict[str, str]:
        pairs = {
            "tenant": self.tenant,
            "model": self.model,
            "deployment": self.deployment,
            "status": self.status,
            "cache_status": self.cache_status,
        }
        return {k: v for k, v in pairs.items() if v}


async def pruned_within(engine: AsyncEngine, since: datetime) -> str | None:
    """When the ledger's kept rows start, as the log shows times, if that is after `since`:
    the window's older requests were pruned (retention.py), and the log cannot show them."""
    kept_from = (await reports.kept_from(engine))[0]
    if kept_from is None or kept_from <= since:
        return None
    return kept_from.strftime("%Y-%m-%d %H:%M")


def clean(value: str | None, limit: int = 200) -> str | None:
    """A filter value from a query string: blank means no filter; overlong is cut."""
    if value is None:
        return None
    value = value.replace("\x00", "").strip()  # Postgres text cannot hold NUL
    return value[:limit] or None


def _where(stmt: Select[Any], f: LedgerFilter) -> Select[Any]:
    stmt = stmt.where(L.created_at >= f.since)
    if f.tenant:
        stmt = stmt.where(L.tenant_id == (f.tenant_id or f.tenant))
    if f.model:
        stmt = stmt.where(L.model == f.model)
    if f.deployment:
        stmt = stmt.where(L.deployment == f.deployment)
    if f.cache_status:
        stmt = stmt.where(L.cache_status == f.cache_status)
    if f.status == "ok":
        stmt = stmt.where(L.status_code < 400)
    elif f.status == "error":
        stmt = stmt.where(L.status_code >= 400)
    elif f.status and f.status.isascii() and f.status.isdigit():
        stmt = stmt.where(L.status_code == int(f.status))
    return stmt


async def page(
    engine: AsyncEngine, f: LedgerFilter, number: int, size: int = PAGE_SIZE
) -> tuple[list[dict[str, Any]], bool]:
    """Rows of page `number` (1-based), newest first, and whether a next page exists.

    No COUNT(*): over millions of rows it would cost more than the page itself.
    """
    stmt = _where(select(*ROW_FIELDS), f).order_by(L.created_at.desc(), L.id.desc())
    stmt = stmt.limit(size + 1).offset((max(number, 1) - 1) * size)
    async with engine.connect() as conn:
        rows = [row_dict(r) for r in (await conn.execute(stmt)).all()]
    return rows[:size], len(rows) > size


async def choices(engine: AsyncEngine, since: datetime) -> dict[str, list[str]]:
    """Models and deployments seen in the window, for the filter drop-downs (from the rollup)."""
    since = since.replace(hour=0, minute=0, second=0, microsecond=0)  # daily buckets
    async with engine.connect() as conn:
        models = (
            await conn.execute(
                select(R.model).where(R.bucket >= since).group_by(R.model).order_by(R.model)
            )
        ).scalars()
        model_list = [str(m) for m in models]
        deployments = (
            await conn.execute(
                select(R.deployment)
                .where(R.bucket >= since, R.deployment != "")
                .group_by(R.deployment)
                .order_by(R.deployment)
            )
        ).scalars()
        return {"models": model_list, "deployments": [str(d) for d in deployments]}


def _cell(value: Any) -> Any:
    # A cell opening with = + - @ is a formula to a spreadsheet; client-chosen strings (the
    # requested model, the request id) must not run as one when the export is opened.
    # (A negative amount stays a number the sheet can sum.)
    if (
        isinstance(value, str)
        and value[:1] in ("=", "+", "-", "@", "\t", "\r")
        and not _is_number(value)
    ):
        return "'" + value
    return "" if value is None else value


def _is_number(value: str) -> bool:
    try:
        return Decimal(value).is_finite()
    except ArithmeticError:
        return False


def _csv_text(batch: Sequence[Any], names: list[str], tenant_names: dict[str, str]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    for i, r in enumerate(batch):
        if i % GIL_ROWS == GIL_ROWS - 1:
            time.sleep(0)  # hands the GIL to the event loop now, not after 5 ms
        d = row_dict(r)
        writer.writerow([*(_cell(d[n]) for n in names), _cell(tenant_names.get(d["tenant_id"]))])
    return buf.getvalue().encode()


async def csv_chunks(engine: AsyncEngine, f: LedgerFilter) -> AsyncIterator[bytes]:
    """The filtered ledger as CSV, streamed from a server-side cursor a batch at a time."""
    names = [c.name for c in ROW_FIELDS]
    # The page shows each row's tenant by name; so does the export, in a last column (a
    # reader that counts columns is unaffected).
    tenant_names = await tenant_names_of(engine)
    buf = io.StringIO()
    csv.writer(buf).writerow([*names, "tenant_name"])
    yield buf.getvalue().encode()
    stmt = _where(select(*ROW_FIELDS), f).order_by(L.created_at.desc(), L.id.desc())
    async with engine.connect() as conn:
        result = await conn.stream(stmt.execution_options(yield_per=CSV_BATCH_ROWS))
        async for batch in result.partitions(CSV_BATCH_ROWS):
            # Formatting costs ~20 us a row. Done on the event loop, an export of a quarter's
            # 1.5M rows held every request this worker served behind it for a minute (p50
            # 11 -> 313 ms); in a thread, the loop gets the GIL back every switch interval.
            yield await asyncio.to_thread(_csv_text, batch, names, tenant_names)
