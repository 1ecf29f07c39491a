"""Budget alerts: a webhook call, once, when a tenant's spend crosses a share of its budget.

A real Postgres (and SQLite), a real HTTP receiver of our own, and at the end a real gateway
spending a tenant's budget through the official openai SDK."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from sqlalchemy import insert, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.budget_alerts import SIGNATURE_HEADER, BudgetAlerts
from gateway.accounting.budgets import period_start
from gateway.db.migrate import upgrade_head
from gateway.db.models import BudgetCounter, table
from gateway.db.session import create_engine
from gateway.settings import Settings
from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    free_port,
    mock_deployment,
    sdk_client,
    sql,
)

pytestmark = pytest.mark.integration

SECRET = "whsec-test-0123456789"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class Receiver:
    """A webhook receiver on 127.0.0.1: records each call; answers `status` (500: a fault),
    or, while held (`hold`), nothing: a call in flight when its sender dies."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/budget?token=s3cr3t"
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self.answering = threading.Event()
        self.answering.set()
        self.called = threading.Event()
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        started.wait(10)

    async def _hook(self, request: web.Request) -> web.Response:
        self.calls.append((dict(request.headers), await request.read()))
        self.called.set()
        if not self.answering.is_set():
            await asyncio.to_thread(self.answering.wait)
        return web.Response(status=self.status, text="ok")

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/hooks/budget", self._hook)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        started.set()
        self.loop.run_forever()

    def bodies(self) -> list[dict[str, Any]]:
        return [orjson.loads(body) for _, body in self.calls]

    def hold(self) -> None:
        self.answering.clear()

    def release(self) -> None:
        self.answering.set()

    def stop(self) -> None:
        self.release()
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(params=["postgres", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("fresh_pg_url"))
    return f"sqlite:///{tmp_path / 'alerts.db'}"


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    await upgrade_head(db_url)
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


async def tenant(
    eng: AsyncEngine,
    tid: str,
    budget: str | None,
    spent: str,
    period: str = "monthly",
    start: datetime | None = None,
) -> None:
    async with eng.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO tenants (id, name, budget_usd, budget_period, flags, created_at) "
                "VALUES (:id, :name, :b, :p, '{}', :now)"
            ),
            {"id": tid, "name": f"team {tid}", "b": budget, "p": period, "now": NOW},
        )
        # through SQLAlchemy, as the gateway writes it (SQLite keeps datetimes as text)
        await conn.execute(
            insert(table(BudgetCounter)).values(
                tenant_id=tid,
                period_start=start or period_start(period, NOW),
                spent_usd=Decimal(spent),
                reserved_usd=0,
                reserved_prev_usd=0,
                reserve_epoch=0,
                updated_at=NOW,
            )
        )


async def spend(eng: AsyncEngine, tid: str, spent: str, period: str = "monthly") -> None:
    counters = table(BudgetCounter)
    async with eng.begin() as conn:
        await conn.execute(
            update(counters)
            .where(
                counters.c.tenant_id == tid,
                counters.c.period_start == period_start(period, NOW),
            )
            .values(spent_usd=Decimal(spent))
        )


def alerts(eng: AsyncEngine, receiver: Receiver, **kw: Any) -> BudgetAlerts:
    return BudgetAlerts(eng, receiver.url, secret=SECRET, attempts=2, **kw)


async def check(a: BudgetAlerts, now: datetime = NOW) -> list[dict[str, Any]]:
    sent = await a.check_once(now)
    await a.drain()
    return sent


async def test_each_threshold_is_sent_once_as_spend_crosses_it(
    engine: AsyncEngine, receiver: Receiver
) -> None:
    await tenant(engine, "a", "10", "4.99")
    a = alerts(engine, receiver)
    try:
        assert await check(a) == []  # under 50%
        await spend(engine, "a", "5")
        first = await check(a)
        assert [x["threshold_pct"] for x in first] == [50]
        assert await check(a) == []  # not again
        await spend(engine, "a", "10.5")  # 80% and 100% crossed between two checks: one call
        second = await check(a)
        assert [x["threshold_pct"] for x in second] == [100]
        assert await check(a) == []
    finally:
        await a.aclose()
    bodies = receiver.bodies()
    assert [b["threshold_pct"] for b in bodies] == [50, 100]
    assert bodies[1]["spent_usd"] == "10.50" and bodies[1]["budget_usd"] == "10.00"
    assert bodies[1]["tenant"] == {"id": "a", "name": "team a"}
    assert bodies[1]["period"] == "monthly"
    assert "team a has spent $10.50 of its $10.00 monthly budget (100%)" in bodies[1]["text"]


async def budget(eng: AsyncEngine, tid: str, usd: str) -> None:
    async with eng.begin() as conn:
        await conn.execute(text("UPDATE tenants SET budget_usd = :b WHERE id = :id"),
                           {"b": usd, "id": tid})  # fmt: skip


async def test_a_changed_budget_alerts_again_at_its_own_thresholds(
    engine: AsyncEngine, receiver: Receiver
) -> None:
    # An admin told "80% of $10" raises the budget to $20: crossing 80% of $20 ($16) is news
    # too. Each threshold alerts once per period per budget amount.
    await tenant(engine, "a", "10", "8")
    a = alerts(engine, receiver)
    try:
        assert [x["threshold_pct"] for x in await check(a)] == [80]
        await budget(engine, "a", "20")  # $8 of $20: 40%, below every threshold
        assert await check(a) == []
        await spend(engine, "a", "10")  # 50% of the new budget
        assert [(x["threshold_pct"], x["budget_usd"]) for x in await check(a)] == [(50, "20.00")]
        await spend(engine, "a", "16")
        assert [(x["threshold_pct"], x["budget_usd"]) for x in await check(a)] == [(80, "20.00")]
        assert await check(a) == []  # not again for the same budget
        await budget(engine, "a", "15")  # lowered under what is spent: over budget, said once
        assert [(x["threshold_pct"], x["budget_usd"]) for x in await check(a)] == [(100, "15.00")]
        assert await check(a) == []
    finally:
        await a.aclose()
    assert [b["threshold_pct"] for b in receiver.bodies()] == [80, 50, 80, 100]
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT threshold_pct, budget_usd, delivered_at FROM budget_alerts ORDER BY 1"
        ))).all()  # fmt: skip
    assert [(r.threshold_pct, Decimal(r.budget_usd)) for r in rows] == [
        (50, Decimal(15)), (80, Decimal(15)), (100, Decimal(15))
    ]  # fmt: skip
    assert all(r.delivered_at is not None for r in rows)


async def test_next_period_alerts_again(engine: AsyncEngine, receiver: Receiver) -> None:
    await tenant(engine, "a", "10", "9")
    a = alerts(engine, receiver)
    try:
        assert [x["threshold_pct"] for x in await check(a)] == [80]
        next_month = period_start("monthly", NOW + timedelta(days=31))
        async with engine.begin() as conn:
            await conn.execute(insert(table(BudgetCounter)).values(
                tenant_id="a", period_start=next_month, spent_usd=Decimal("5"), reserved_usd=0,
                reserved_prev_usd=0, reserve_epoch=0, updated_at=NOW,
            ))  # fmt: skip
        later = await check(a, next_month + timedelta(hours=1))
        assert [(x["threshold_pct"], x["period_start"]) for x in later] == [
            (50, next_month.isoformat())
        ]
    finally:
        await a.aclose()


async def test_the_call_is_signed_with_the_secret(engine: AsyncEngine, receiver: Receiver) -> None:
    await tenant(engine, "a", "1", "0.9")
    a = alerts(engine, receiver)
    try:
        await check(a)
    finally:
        await a.aclose()
    headers, body = receiver.calls[0]
    parts = dict(p.split("=", 1) for p in headers[SIGNATURE_HEADER].split(","))
    assert abs(int(parts["t"]) - time.time()) < 60
    expected = hmac.new(SECRET.encode(), parts["t"].encode() + b"." + body, hashlib.sha256)
    assert hmac.compare_digest(parts["v1"], expected.hexdigest())
    assert headers["Content-Type"] == "application/json"


async def test_two_replicas_send_an_alert_once(engine: AsyncEngine, receiver: Receiver) -> None:
    await tenant(engine, "a", "1", "1")
    one, two = alerts(engine, receiver), alerts(engine, receiver)
    try:
        results = await asyncio.gather(check(one), check(two))
    finally:
        await one.aclose()
        await two.aclose()
    assert sorted(len(r) for r in results) == [0, 1]
    assert [b["threshold_pct"] for b in receiver.bodies()] == [100]


async def test_only_the_tenants_own_period_counts(engine: AsyncEngine, receiver: Receiver) -> None:
    # a daily tenant's old day, a monthly tenant's last month, a deleted tenant, no budget
    await tenant(engine, "d", "1", "5", "daily", start=period_start("daily", NOW - timedelta(1)))
    last_month = period_start("monthly", NOW - timedelta(days=31))
    await tenant(engine, "m", "1", "5", start=last_month)
    await tenant(engine, "gone", "1", "5")
    await tenant(engine, "free", None, "5")
    await tenant(engine, "total", "2", "1.6", "total")
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE tenants SET deleted_at = :now WHERE id = 'gone'"),
                           {"now": NOW})  # fmt: skip
    a = alerts(engine, receiver)
    try:
        sent = await check(a)
    finally:
        await a.aclose()
    assert [(x["tenant"]["id"], x["threshold_pct"]) for x in sent] == [("total", 80)]


async def test_a_failed_delivery_is_retried_and_recorded(
    engine: AsyncEngine, receiver: Receiver
) -> None:
    receiver.status = 500
    await tenant(engine, "a", "1", "1")
    a = alerts(engine, receiver)
    try:
        await check(a)
    finally:
        await a.aclose()
    assert len(receiver.calls) == 2  # attempts=2
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT threshold_pct, delivered_at, last_error FROM budget_alerts")
            )
        ).all()
    # the one call (100%) covered the thresholds claimed with it; each row says how it went
    assert sorted(r.threshold_pct for r in rows) == [50, 80, 100]
    assert all(r.delivered_at is None and r.last_error == "HTTP 500" for r in rows)


async def test_an_alert_the_receiver_missed_is_sent_when_it_is_back(
    engine: AsyncEngine, receiver: Receiver
) -> None:
    """A receiver down for longer than the attempts' pauses (a deploy, a minute's outage) lost
    the alert for good: its row claimed the threshold. Later checks send it again, with a
    growing pause, until it is delivered."""
    receiver.status = 503
    await tenant(engine, "a", "1", "1")
    a = alerts(engine, receiver, retry_pause_s=0)
    try:
        assert [x["threshold_pct"] for x in await check(a)] == [100]
        assert len(receiver.calls) == 2  # both attempts failed
        receiver.status = 200
        assert await check(a) == []  # nothing new crossed; the missed alert goes again
        assert len(receiver.calls) == 3
        await check(a)
        assert len(receiver.calls) == 3  # delivered: not again
    finally:
        await a.aclose()
    assert [b["threshold_pct"] for b in receiver.bodies()] == [100, 100, 100]
    async with engine.connect() as conn:
        rows = (
            await conn.execute(text("SELECT delivered_at, last_error FROM budget_alerts"))
        ).all()
    assert len(rows) == 3 and all(r.delivered_at is not None and r.last_error is None for r in rows)


# past a claim's lease (every attempt's timeout and pause, and a minute: 81 s by default)
LEASE_OVER = timedelta(minutes=10)


async def rows_of(eng: AsyncEngine) -> list[Any]:
    async with eng.connect() as conn:
        return list(
            (
                await conn.execute(
                    text(
                        "SELECT threshold_pct, delivered_at, next_attempt_at FROM budget_alerts "
                        "ORDER BY threshold_pct"
                    )
                )
            ).all()
        )


async def die(a: BudgetAlerts) -> None:
    """What a SIGKILL leaves of a sender: its deliveries in flight stop where they are, and
    record nothing."""
    for task in list(a._sends):
        task.cancel()
    await asyncio.gather(*a._sends, return_exceptions=True)
    await a.aclose()


async def test_an_alert_whose_sender_died_is_sent_by_another_replica(
    engine: AsyncEngine, receiver: Receiver
) -> None:
    """A replica that claimed an alert and died before delivering it (its call in flight) left
    the row claimed and the alert unsent for good. Past the claim's lease, another replica
    sends it; within it, none does (its claimer may still be delivering)."""
    await tenant(engine, "a", "1", "0.85")
    receiver.hold()
    one = alerts(engine, receiver)
    assert [x["threshold_pct"] for x in await one.check_once(NOW)] == [80]
    assert await asyncio.to_thread(receiver.called.wait, 30)  # in flight, unanswered
    await die(one)
    receiver.release()
    two = alerts(engine, receiver)
    try:
        assert await check(two, NOW + timedelta(seconds=1)) == []
        assert len(receiver.calls) == 1  # its claimer's lease runs: not sent twice
        assert await check(two, NOW + LEASE_OVER) == []
        assert len(receiver.calls) == 2
        await check(two, NOW + 2 * LEASE_OVER)
        assert len(receiver.calls) == 2  # delivered: not again
    finally:
        await two.aclose()
    first, again = receiver.bodies()
    assert again == first  # the alert as claimed: 80%, its spend, its time
    assert [(r.threshold_pct, r.delivered_at is not None) for r in await rows_of(engine)] == [
        (50, True), (80, True)
    ]  # fmt: skip


async def test_a_missed_alert_is_sent_by_a_replica_started_later(
    engine: AsyncEngine, receiver: Receiver
) -> None:
    """The alert a receiver missed was retried only by the process that claimed it: restarted
    (a deploy) or gone, nobody sent it again. The row says when it is due, for any replica."""
    receiver.status = 503
    await tenant(engine, "a", "1", "1")
    one = alerts(engine, receiver, retry_pause_s=60)
    try:
        assert [x["threshold_pct"] for x in await check(one)] == [100]
    finally:
        await one.aclose()  # the replica is replaced
    assert len(receiver.calls) == 2
    receiver.status = 200
    two = alerts(engine, receiver)
    try:
        assert await check(two, NOW + timedelta(seconds=30)) == []
        assert len(receiver.calls) == 2  # the pause after the failure is not over
        await check(two, NOW + timedelta(seconds=61))
        assert len(receiver.calls) == 3
    finally:
        await two.aclose()
    assert receiver.bodies()[2]["threshold_pct"] == 100
    assert all(r.delivered_at is not None for r in await rows_of(engine))


async def test_a_missed_lower_threshold_is_covered_by_a_higher_one(
    engine: AsyncEngine, receiver: Receiver
) -> None:
    receiver.status = 503
    await tenant(engine, "a", "1", "0.5")
    a = alerts(engine, receiver, retry_pause_s=0)
    try:
        assert [x["threshold_pct"] for x in await check(a)] == [50]
        receiver.status = 200
        await spend(engine, "a", "0.8")
        assert [x["threshold_pct"] for x in await check(a)] == [80]
        await check(a)
    finally:
        await a.aclose()
    assert [b["threshold_pct"] for b in receiver.bodies()] == [50, 50, 80]  # 50% not again
    rows = await rows_of(engine)
    assert [(r.threshold_pct, r.next_attempt_at) for r in rows] == [(50, None), (80, None)]


def test_settings_refuse_bad_thresholds_and_urls() -> None:
    ok = Settings(budget_alert_thresholds="80%, 50,100", budget_alert_webhook_url="https://h/x")
    assert ok.budget_alert_percentages == (50, 80, 100)
    for bad in ("", "eighty", "0", "50,-1"):
        with pytest.raises(ValueError, match="percentage"):
            Settings(budget_alert_thresholds=bad)
    with pytest.raises(ValueError, match="http"):
        Settings(budget_alert_webhook_url="hooks.slack.com/services/T/B/x")
    assert "s3cr3t" not in repr(Settings(budget_alert_webhook_url="https://h/x?token=s3cr3t"))


# -- end to end: a gateway spends a tenant's budget and calls the webhook ----------------------


def test_a_gateway_calls_the_webhook_when_a_tenant_spends_its_budget(
    session_tmp: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer, receiver: Receiver
) -> None:
    dep = mock_deployment("pricey", "pricey", mock_upstream, input_cost_per_mtok=1000,
                          output_cost_per_mtok=1000)  # fmt: skip
    env = {
        "THRIFTGATE_BUDGET_ALERT_WEBHOOK_URL": receiver.url,
        "THRIFTGATE_BUDGET_ALERT_SECRET": SECRET,
        "THRIFTGATE_BUDGET_ALERT_INTERVAL_S": "1",
    }
    gw = GatewayServer(session_tmp, fresh_pg_url, [dep], extra_env=env)
    try:
        _, key = gw.new_tenant(budget_usd="0.05")
        client = sdk_client(gw, key)
        for i in range(3):  # ~10 prompt + a few answer tokens at $1000/M: ~$0.015 each
            client.chat.completions.create(
                model="pricey",
                max_tokens=5,
                messages=[{"role": "user", "content": f"spend a little {i}"}],
                extra_headers={"cache-control": "no-store"},
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not receiver.calls:
            time.sleep(0.2)
    finally:
        gw.stop()
    log = gw.log()
    bodies = receiver.bodies()
    assert len(bodies) == 1, bodies
    assert bodies[0]["threshold_pct"] >= 50
    assert Decimal(bodies[0]["spent_usd"]) >= Decimal("0.025")
    assert "s3cr3t" not in log  # the webhook URL's token never reaches the log


def test_a_gateway_killed_while_sending_an_alert_leaves_it_to_another_replica(
    session_tmp: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer, receiver: Receiver
) -> None:
    """Two processes on one database: a `thriftgate serve` claims a tenant's alert and is
    SIGKILLed while its call is in flight; another replica's check sends it once the claim's
    lease is over (a real clock: its check is asked as of then)."""
    dep = mock_deployment("pricey", "pricey", mock_upstream, input_cost_per_mtok=1000,
                          output_cost_per_mtok=1000)  # fmt: skip
    env = {
        "THRIFTGATE_BUDGET_ALERT_WEBHOOK_URL": receiver.url,
        "THRIFTGATE_BUDGET_ALERT_INTERVAL_S": "1",
    }
    receiver.hold()
    gw = GatewayServer(session_tmp, fresh_pg_url, [dep], extra_env=env)
    try:
        _, key = gw.new_tenant(budget_usd="0.05")
        sdk_client(gw, key).chat.completions.create(
            model="pricey",
            max_tokens=5,
            messages=[{"role": "user", "content": "spend more than half of it in one go " * 4}],
            extra_headers={"cache-control": "no-store"},
        )
        assert receiver.called.wait(30), gw.log()[-2000:]  # in flight, unanswered
        gw.kill()
    finally:
        gw.stop()
    receiver.release()
    claimed = receiver.bodies()[-1]

    async def another_replica() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        eng = create_engine(fresh_pg_url)
        other = BudgetAlerts(eng, receiver.url)  # the gateway's own attempts and lease
        try:
            now = datetime.now(UTC)
            early = await check(other, now)
            late = await check(other, now + LEASE_OVER)
            return early, late
        finally:
            await other.aclose()
            await eng.dispose()

    calls_before = len(receiver.calls)
    early, late = asyncio.run(another_replica())
    assert early == [] and late == []  # nothing newly crossed: a claimed alert sent again
    assert len(receiver.calls) == calls_before + 1
    assert receiver.bodies()[-1] == claimed
    delivered = sql(
        fresh_pg_url,
        "SELECT threshold_pct FROM budget_alerts WHERE delivered_at IS NOT NULL "
        "ORDER BY threshold_pct DESC",
    )
    assert delivered and delivered[0]["threshold_pct"] == claimed["threshold_pct"]


# A threshold crossed in a period's last seconds (hunt12 h122): the checks read only the
# counters of the periods current at the check, so a daily budget spent at 23:59:55, after the
# day's last check, was never alerted: at the next check the day was over.
LAST_CHECK = datetime(2026, 11, 30, 23, 59, 50, tzinfo=UTC)  # 15 s apart
NEXT_CHECK = datetime(2026, 12, 1, 0, 0, 5, tzinfo=UTC)


async def test_a_budget_spent_after_the_periods_last_check_is_alerted(
    engine: AsyncEngine, receiver: Receiver
) -> None:
    day = period_start("daily", LAST_CHECK)
    await tenant(engine, "d", "1", "0.4", "daily", start=day)
    a = alerts(engine, receiver)
    try:
        assert await check(a, LAST_CHECK) == []
        await _spend_on(engine, "d", day, "1")  # the day's budget, spent at 23:59:55
        sent = await check(a, NEXT_CHECK)
        assert [(x["threshold_pct"], x["period_start"]) for x in sent] == [(100, day.isoformat())]
        assert await check(a, NEXT_CHECK + timedelta(seconds=15)) == []  # once
    finally:
        await a.aclose()
    assert [b["threshold_pct"] for b in receiver.bodies()] == [100]


async def test_a_period_long_over_is_not_alerted(engine: AsyncEngine, receiver: Receiver) -> None:
    """Only the period that ended since the last check: yesterday's spend at a first check a
    minute into today (a replica started then) is not news."""
    yesterday = period_start("daily", LAST_CHECK)
    await tenant(engine, "d", "1", "1", "daily", start=yesterday)
    a = alerts(engine, receiver)
    try:
        assert await check(a, NEXT_CHECK + timedelta(minutes=1)) == []
    finally:
        await a.aclose()


async def _spend_on(engine: AsyncEngine, tid: str, start: datetime, spent: str) -> None:
    counters = table(BudgetCounter)
    async with engine.begin() as conn:
        await conn.execute(
            update(counters)
            .where(counters.c.tenant_id == tid, counters.c.period_start == start)
            .values(spent_usd=Decimal(spent))
        )
