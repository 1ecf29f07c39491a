"""Budget alerts: a webhook call when a tenant's spend crosses a share of its budget.

Every `interval_s` one query reads the counters of the current budget periods that have passed the
lowest threshold (50%, 80%, 100% by default). For each tenant and period, the thresholds it has
crossed are recorded in `budget_alerts` with `INSERT ... ON CONFLICT` (a row of another budget
amount is taken over): the replica whose statement lands a row owns the alert, so several replicas
on one database send it once. One call per tenant and poll says the highest threshold newly crossed
(a tenant that went from 40% to 100% between two polls gets one call for 100%, not three). A
threshold alerts once per period and budget amount: a budget raised after its 80% alert alerts
again at 80% of the new amount (and one lowered under the spend, at once); the next period starts
afresh. Delivery is tried `attempts` times with a growing pause; its outcome stays in the row
(`delivered_at`, `last_error`), and an alert not delivered is sent again by later checks (after a
minute, then doubling up to an hour) until it is, while its period lasts and this process runs.

The body is JSON (`type: "budget.threshold"`) with a `text` line, so a Slack or Teams incoming
webhook URL works as it is. With a secret set, `X-Thriftgate-Signature: t=<unix>,v1=<hex>` is
the HMAC-SHA256 of `"<t>.<body>"` (as Stripe signs), so a receiver can check the sender and
refuse a replay. The URL is never logged (a Slack URL is itself a secret): only its host.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.budgets import EPOCH, period_start
from gateway.db.models import BudgetAlert, BudgetCounter, Tenant, as_utc, table
from gateway.db.session import FailureLog, upsert_insert

log = logging.getLogger("thriftgate.budget_alerts")

SIGNATURE_HEADER = "X-Thriftgate-Signature"


@dataclass(frozen=True, slots=True)
class Crossing:
    """A tenant's counter past at least one threshold in its current period."""

    tenant_id: str
    tenant_name: str
    period: str
    period_start: datetime
    budget_usd: Decimal
    spent_usd: Decimal

    def crossed(self, thresholds: tuple[int, ...]) -> list[int]:
        return [pct for pct in thresholds if self.spent_usd * 100 >= self.budget_usd * pct]


@dataclass(slots=True)
class Missed:
    """An alert whose attempts all failed: sent again once `due` (monotonic) has come."""

    crossing: Crossing
    thresholds: list[int]
    alert: dict[str, Any]
    due: float
    pause: float  # before the next one, if this one fails too


class BudgetAlerts:
    def __init__(
        self,
        engine: AsyncEngine,
        webhook_url: str,
        *,
        thresholds: tuple[int, ...] = (50, 80, 100),
        secret: str | None = None,
        interval_s: float = 15.0,
        attempts: int = 3,
        timeout_s: float = 5.0,
        retry_pause_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.engine = engine
        self.webhook_url = webhook_url
        self.thresholds = tuple(sorted(set(thresholds)))
        self.secret = secret
        self.interval_s = interval_s
        self.attempts = attempts
        self.retry_pause_s = retry_pause_s
        # alerts whose attempts all failed, sent again by later checks (when due, monotonic)
        # until delivered or their period is over: a receiver down for a while still gets them
        self._missed: dict[tuple[str, datetime], Missed] = {}
        self._client = httpx.AsyncClient(timeout=timeout_s, transport=transport)
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self._poll_log = FailureLog(log, "checking budgets for alerts")
        self._host = urlsplit(webhook_url).hostname or "?"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="budget-alerts")

    async def _loop(self) -> None:
        while True:
            try:
                await self.check_once()
                self._poll_log.succeeded()
            except Exception:
                self._poll_log.failed()
            await asyncio.sleep(self.interval_s)

    async def check_once(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Record the thresholds crossed since the last check and send their alerts (in the
        background); returns the alerts this call claimed."""
        now = now or datetime.now(UTC)
        self._resend_missed(now)
        alerts = []
        for crossing in await self._crossings(now):
            new = await self._claim(crossing, crossing.crossed(self.thresholds), now)
            if new:
                alert = alert_body(crossing, max(new), now)
                alerts.append(alert)
                self._missed.pop((crossing.tenant_id, crossing.period_start), None)  # newer
                self._send(crossing, new, alert, self.attempts, self.retry_pause_s)
        return alerts

    def _send(
        self, crossing: Crossing, new: list[int], alert: dict[str, Any], attempts: int, pause: float
    ) -> None:
        task = asyncio.create_task(self._deliver(crossing, new, alert, attempts, pause))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    def _resend_missed(self, now: datetime) -> None:
        """Send again each missed alert that is due (one attempt); forget those whose period
        is over."""
        due = time.monotonic()
        for key, missed in list(self._missed.items()):
            crossing = missed.crossing
            if period_start(crossing.period, now) != crossing.period_start:
                del self._missed[key]
            elif missed.due <= due:
                del self._missed[key]
                self._send(crossing, missed.thresholds, missed.alert, 1, missed.pause)

    async def _crossings(self, now: datetime) -> list[Crossing]:
        counters, tenants = table(BudgetCounter), table(Tenant)
        starts = {period_start("daily", now), period_start("monthly", now), EPOCH}
        lowest = Decimal(self.thresholds[0]) / 100
        stmt = (
            select(
                tenants.c.id,
                tenants.c.name,
                tenants.c.budget_period,
                tenants.c.budget_usd,
                counters.c.period_start,
                counters.c.spent_usd,
            )
            .join(counters, counters.c.tenant_id == tenants.c.id)
            .where(
                tenants.c.deleted_at.is_(None),
                tenants.c.budget_usd > 0,
                counters.c.period_start.in_(starts),
                counters.c.spent_usd >= tenants.c.budget_usd * lowest,
            )
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        out = []
        for tid, name, period, budget, start, spent in rows:
            start = as_utc(start)  # SQLite: naive
            if start == period_start(period, now):  # the tenant's own period's counter
                out.append(Crossing(tid, name, period, start, Decimal(budget), Decimal(spent)))
        return out

    async def _claim(self, crossing: Crossing, crossed: list[int], now: datetime) -> list[int]:
        """Insert a row per crossed threshold; the ones this call inserted are its to send. A
        row left by another budget amount is this call's too (taken over: the threshold
        re-arms when the budget changes); the lock `ON CONFLICT DO UPDATE` takes lets one
        replica take it."""
        if not crossed:
            return []
        alerts = table(BudgetAlert)
        new = []
        async with self.engine.begin() as conn:
            for pct in crossed:
                insert = upsert_insert(conn.dialect.name, alerts).values(
                    tenant_id=crossing.tenant_id,
                    period_start=crossing.period_start,
                    threshold_pct=pct,
                    budget_usd=crossing.budget_usd,
                    spent_usd=crossing.spent_usd,
                    created_at=now,
                )
                stmt = insert.on_conflict_do_update(
                    index_elements=[alerts.c.tenant_id, alerts.c.period_start,
                                    alerts.c.threshold_pct],
                    set_={
                        "budget_usd": insert.excluded.budget_usd,
                        "spent_usd": insert.excluded.spent_usd,
                        "created_at": insert.excluded.created_at,
                        "delivered_at": None,
                        "last_error": None,
                    },
                    where=alerts.c.budget_usd != insert.excluded.budget_usd,
                ).returning(alerts.c.threshold_pct)  # fmt: skip
                if (await conn.execute(stmt)).first() is not None:
                    new.append(pct)
        return new

    async def _deliver(
        self,
        crossing: Crossing,
        new: list[int],
        alert: dict[str, Any],
        attempts: int,
        pause: float,
    ) -> None:
        """Send the alert of the highest of `new` (the thresholds this replica claimed) and
        record the outcome in each of their rows; one not delivered is sent again by a check
        `pause` seconds later (doubling, up to an hour)."""
        body = orjson.dumps(alert)
        error = None
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(min(2.0**attempt, 30.0))
            try:
                resp = await self._client.post(
                    self.webhook_url, content=body, headers=self._headers(body)
                )
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}"
                continue
            if resp.status_code < 300:
                error = None
                break
            error = f"HTTP {resp.status_code}"
        if error is not None:
            log.warning(
                "budget alert for tenant %s (%d%%) not delivered to %s after %d attempts: %s; "
                "trying again in %.0f s",
                crossing.tenant_id, max(new), self._host, attempts, error, pause,
            )  # fmt: skip
            key = (crossing.tenant_id, crossing.period_start)
            if key not in self._missed:  # (unless a newer alert for it was claimed since)
                due = time.monotonic() + pause
                self._missed[key] = Missed(crossing, new, alert, due, min(pause * 2, 3600.0))
        await self._record(crossing, new, error)

    def _headers(self, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "thriftgate-budget-alerts"}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body, int(time.time()))
        return headers

    async def _record(self, crossing: Crossing, new: list[int], error: str | None) -> None:
        alerts = table(BudgetAlert)
        values: dict[str, Any] = {"last_error": error}
        if error is None:
            values["delivered_at"] = datetime.now(UTC)
        stmt = (
            update(alerts)
            .where(
                and_(
                    alerts.c.tenant_id == crossing.tenant_id,
                    alerts.c.period_start == crossing.period_start,
                    alerts.c.threshold_pct.in_(new),
                )
            )
            .values(**values)
        )
        with contextlib.suppress(Exception):  # the alert went (or not); the row is a record
            async with self.engine.begin() as conn:
                await conn.execute(stmt)

    async def drain(self) -> None:
        """Wait for the deliveries in flight (tests, shutdown)."""
        while self._sends:
            await asyncio.gather(*list(self._sends), return_exceptions=True)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.drain(), timeout=5)
        for task in list(self._sends):
            task.cancel()
        await self._client.aclose()


def alert_body(crossing: Crossing, pct: int, now: datetime) -> dict[str, Any]:
    spent, budget = _money(crossing.spent_usd), _money(crossing.budget_usd)
    return {
        "type": "budget.threshold",
        "text": (
            f"thriftgate: tenant {crossing.tenant_name} has spent ${spent} of its "
            f"${budget} {crossing.period} budget ({pct}%)"
        ),
        "tenant": {"id": crossing.tenant_id, "name": crossing.tenant_name},
        "threshold_pct": pct,
        "spent_usd": spent,
        "budget_usd": budget,
        "period": crossing.period,
        "period_start": crossing.period_start.isoformat(),
        "at": now.isoformat(),
    }


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def _money(value: Decimal) -> str:
    """Cents from a dollar up, every digit below (a $0.05 budget's spend is $0.0412)."""
    return format(value.quantize(Decimal("0.01")) if value >= 1 else value.normalize(), "f")
