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
minute, then doubling up to an hour) until it is, while its period lasts.

The row, not the process, says when an alert is due (`next_attempt_at`): a claim holds it for a
lease (every attempt's timeout and pause, and a minute) while its claimer delivers, and a failed
delivery sets the pause. Any replica's check takes a due alert (`UPDATE ... WHERE
next_attempt_at <= now`: one of them gets it) and sends it: a replica that died before delivering
(SIGKILL, OOM, a lost node), or while its receiver was down, no longer loses the alert. An alert
for a higher threshold of the same period covers the lower ones not yet delivered.

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
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from sqlalchemy import and_, case, select, update
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


MAX_RETRY_PAUSE_S = 3600.0


def _attempt_pause(attempt: int) -> float:
    """The pause before delivery attempt number `attempt` (1, 2, ...) of one send."""
    return min(2.0**attempt, 30.0)


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
        lease_s: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.engine = engine
        self.webhook_url = webhook_url
        self.thresholds = tuple(sorted(set(thresholds)))
        self.secret = secret
        self.interval_s = interval_s
        self.attempts = attempts
        self.retry_pause_s = retry_pause_s
        # how long a claimed alert is its claimer's to deliver (all its attempts, and a
        # margin); past it, the claimer is taken to be dead and any replica sends it
        sending_s = attempts * timeout_s + sum(_attempt_pause(a) for a in range(1, attempts))
        self.lease_s = lease_s if lease_s is not None else sending_s + 60.0
        self._client = httpx.AsyncClient(timeout=timeout_s, transport=transport)
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self._poll_log = FailureLog(log, "checking budgets for alerts")
        self._host = urlsplit(webhook_url).hostname or "?"
        self._checked: datetime | None = None  # when the last check read the counters

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
        alerts = []
        crossings = await self._crossings(now)
        self._checked = now
        for crossing in crossings:
            new = await self._claim(crossing, crossing.crossed(self.thresholds), now)
            if new:
                alert = alert_body(crossing, max(new), now)
                alerts.append(alert)
                self._send(crossing, new, alert, self.attempts, 0, now)
        await self._send_due(now)
        return alerts

    def _send(
        self,
        crossing: Crossing,
        new: list[int],
        alert: dict[str, Any],
        attempts: int,
        failures: int,
        now: datetime,
    ) -> None:
        task = asyncio.create_task(self._deliver(crossing, new, alert, attempts, failures, now))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send_due(self, now: datetime) -> None:
        """Take the alerts not delivered whose time has come (a failed delivery's pause is
        over, or a claimer died within its lease) and send them, one call per tenant and
        period; give up those whose period is over, whose tenant is gone or whose budget
        changed since (a crossing of the new budget claims its own)."""
        alerts, tenants = table(BudgetAlert), table(Tenant)
        stmt = (
            select(
                alerts.c.tenant_id,
                alerts.c.period_start,
                alerts.c.threshold_pct,
                alerts.c.budget_usd,
                alerts.c.spent_usd,
                alerts.c.created_at,
                tenants.c.name,
                tenants.c.budget_period,
                tenants.c.budget_usd.label("budget_now"),
                tenants.c.deleted_at,
            )
            .join(tenants, tenants.c.id == alerts.c.tenant_id)
            .where(alerts.c.delivered_at.is_(None), alerts.c.next_attempt_at <= now)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        groups: dict[tuple[str, datetime], list[Any]] = {}
        stale: list[Any] = []
        for row in rows:
            start = as_utc(row.period_start)
            current = (
                row.deleted_at is None
                and row.budget_now is not None
                and Decimal(row.budget_now) == Decimal(row.budget_usd)
                and period_start(row.budget_period, now) == start
            )
            if current:
                groups.setdefault((row.tenant_id, start), []).append(row)
            else:
                stale.append(row)
        for row in stale:
            await self._lease(row.tenant_id, row.period_start, [row.threshold_pct], now, None)
        for (tenant_id, start), group in groups.items():
            taken = await self._lease(
                tenant_id, start, [r.threshold_pct for r in group], now, self.lease_s
            )
            if not taken:  # another replica took them first
                continue
            top = max((r for r in group if r.threshold_pct in taken), key=lambda r: r.threshold_pct)
            crossing = Crossing(
                tenant_id, top.name, top.budget_period, start, Decimal(top.budget_usd),
                Decimal(top.spent_usd),
            )  # fmt: skip
            failures = max(taken.values())
            alert = alert_body(crossing, top.threshold_pct, as_utc(top.created_at))
            # a claimer that died gets its whole send; a failed one is tried once more
            attempts = self.attempts if failures == 0 else 1
            self._send(crossing, list(taken), alert, attempts, failures, now)

    async def _lease(
        self,
        tenant_id: str,
        start: datetime,
        thresholds: list[int],
        now: datetime,
        lease_s: float | None,
    ) -> dict[int, int]:
        """Take the due alerts of `thresholds` for `lease_s` (None: give them up); returns
        the thresholds this call took, with their failed deliveries so far."""
        alerts = table(BudgetAlert)
        until = None if lease_s is None else now + timedelta(seconds=lease_s)
        stmt = (
            update(alerts)
            .where(
                alerts.c.tenant_id == tenant_id,
                alerts.c.period_start == start,
                alerts.c.threshold_pct.in_(thresholds),
                alerts.c.delivered_at.is_(None),
                alerts.c.next_attempt_at <= now,
            )
            .values(next_attempt_at=until)
            .returning(alerts.c.threshold_pct, alerts.c.failures)
        )
        async with self.engine.begin() as conn:
            return {int(pct): int(n) for pct, n in (await conn.execute(stmt)).all()}

    async def _crossings(self, now: datetime) -> list[Crossing]:
        """The current periods' counters past the lowest threshold, and those of a period that
        ended since the last check: a threshold crossed in its last seconds (a daily budget
        spent at 23:59:55, the check every 15 s) is still alerted, once, at the next check."""
        counters, tenants = table(BudgetCounter), table(Tenant)
        last = min(now, self._checked or now - timedelta(seconds=self.interval_s))
        starts = {period_start(p, at) for p in ("daily", "monthly") for at in (last, now)}
        starts.add(EPOCH)
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
            # the tenant's own period's counter (its current one, or the one just ended)
            if start in (period_start(period, now), period_start(period, last)):
                out.append(Crossing(tid, name, period, start, Decimal(budget), Decimal(spent)))
        return out

    async def _claim(self, crossing: Crossing, crossed: list[int], now: datetime) -> list[int]:
        """Insert a row per crossed threshold; the ones this call inserted are its to send. A
        row left by another budget amount is this call's too (taken over: the threshold
        re-arms when the budget changes); the lock `ON CONFLICT DO UPDATE` takes lets one
        replica take it. The claim holds them for the lease; lower thresholds of the period
        still undelivered are covered by this alert and no longer sent on their own."""
        if not crossed:
            return []
        alerts = table(BudgetAlert)
        until = now + timedelta(seconds=self.lease_s)
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
                    next_attempt_at=until,
                    failures=0,
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
                        "next_attempt_at": insert.excluded.next_attempt_at,
                        "failures": 0,
                    },
                    where=alerts.c.budget_usd != insert.excluded.budget_usd,
                ).returning(alerts.c.threshold_pct)  # fmt: skip
                if (await conn.execute(stmt)).first() is not None:
                    new.append(pct)
            if new:
                await conn.execute(
                    update(alerts)
                    .where(
                        alerts.c.tenant_id == crossing.tenant_id,
                        alerts.c.period_start == crossing.period_start,
                        alerts.c.threshold_pct < max(new),
                        alerts.c.threshold_pct.not_in(new),
                        alerts.c.delivered_at.is_(None),
                    )
                    .values(next_attempt_at=None)
                )
        return new

    async def _deliver(
        self,
        crossing: Crossing,
        new: list[int],
        alert: dict[str, Any],
        attempts: int,
        failures: int,
        now: datetime,
    ) -> None:
        """Send the alert of the highest of `new` (the thresholds this replica took) and
        record the outcome in each of their rows; one not delivered is sent again by a check
        (of any replica) a pause after `now`: a minute, doubling with each failure, up to an
        hour."""
        body = orjson.dumps(alert)
        error = None
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(_attempt_pause(attempt))
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
        retry_at = None
        if error is not None:
            pause = min(self.retry_pause_s * 2.0**failures, MAX_RETRY_PAUSE_S)
            log.warning(
                "budget alert for tenant %s (%d%%) not delivered to %s after %d attempts: %s; "
                "trying again in %.0f s",
                crossing.tenant_id, max(new), self._host, attempts, error, pause,
            )  # fmt: skip
            retry_at = now + timedelta(seconds=pause)
        await self._record(crossing, new, error, retry_at)

    def _headers(self, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "thriftgate-budget-alerts"}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body, int(time.time()))
        return headers

    async def _record(
        self, crossing: Crossing, new: list[int], error: str | None, retry_at: datetime | None
    ) -> None:
        alerts = table(BudgetAlert)
        values: dict[str, Any] = {"last_error": error}
        if error is None:
            values["delivered_at"] = datetime.now(UTC)
            values["next_attempt_at"] = None
        else:  # due again after the pause, unless a higher threshold's alert covered it
            values["failures"] = alerts.c.failures + 1
            values["next_attempt_at"] = case(
                (alerts.c.next_attempt_at.is_(None), None), else_=retry_at
            )
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
