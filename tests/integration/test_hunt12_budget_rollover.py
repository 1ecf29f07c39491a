"""Requests in flight when a budget period turns (hunt12 h122).

A request's cost counts in the period it ends in (its ledger row's `created_at`: the rollups,
reports and the new period's counter agree on that), but its reservation stayed in the counter
of the period it began in. At midnight the new period's counter held none of the requests still
running, so it admitted a whole budget beside them, and they were then billed into it: a daily
budget of $1 with five $1 streams running at midnight could spend $2 in the new day.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import NoResultFound
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting import budgets
from gateway.accounting.budgets import BudgetBook
from gateway.accounting.ledger import LedgerWriter
from gateway.db.migrate import upgrade_head
from gateway.db.models import BudgetCounter, table
from gateway.db.session import create_engine
from gateway.errors import BudgetExceeded
from gateway.pipeline.account import ledger_row
from gateway.pipeline.context import RequestContext, TenantInfo, Usage
from gateway.pipeline.limits import BudgetStage
from gateway.routing.catalog import Catalog
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context

pytestmark = pytest.mark.integration

PROMPT = 10
ANSWER = 150  # max_tokens: $1 + $4 per Mtok reserves $0.00061 a request
BUDGET = Decimal("0.001")  # one reservation fits beside one in flight, not two
BEFORE = datetime(2026, 11, 30, 23, 59, 50, tzinfo=UTC)
AFTER = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)  # a new day, and a new month


@pytest.fixture(params=["postgres", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("fresh_pg_url"))
    return f"sqlite+aiosqlite:///{tmp_path / 'rollover.db'}"


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    url = db_url
    await upgrade_head(url)
    eng = create_engine(url)
    async with eng.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO tenants (id, name, budget_usd, budget_period, flags, created_at) "
                "VALUES ('t', 't', :b, 'daily', '{}', CURRENT_TIMESTAMP)"
            ),
            {"b": str(BUDGET)},
        )
    yield eng
    await eng.dispose()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """The budget calendar's 'now' (as test_budget_days moves it): a period turns when set."""
    today = [BEFORE]
    real = budgets.period_start
    monkeypatch.setattr(
        budgets, "period_start", lambda period, now=None: real(period, now or today[0])
    )
    return today


def _stage(book: BudgetBook) -> BudgetStage:
    dep = DeploymentConfig(
        name="solo",
        model="m",
        api_base="http://127.0.0.1:1/v1",
        input_cost_per_mtok=Decimal(1),
        output_cost_per_mtok=Decimal(4),
    )
    return BudgetStage(book, Catalog.build([dep]), fail_open=False)


async def _admit(stage: BudgetStage) -> RequestContext | None:
    tenant = TenantInfo(id="t", name="t", key_id=None, budget_usd=BUDGET, budget_period="daily")
    ctx = bare_context(
        body={"max_tokens": ANSWER},
        tenant=tenant,
        prompt_tokens_estimate=PROMPT,
        ledger_id=uuid.uuid4().hex,
    )
    try:
        await stage.before(ctx)
    except BudgetExceeded:
        return None
    return ctx


def _finish(stage: BudgetStage, writer: LedgerWriter, ctx: RequestContext, at: datetime) -> None:
    """The request ends at `at` having used its whole reservation; its row is spooled."""
    stage.account_now(ctx)
    ctx.usage = Usage(prompt_tokens=PROMPT, completion_tokens=ANSWER)
    ctx.cost_usd = ctx.reserved_usd
    row = ledger_row(ctx)
    row["created_at"] = at.isoformat()
    writer.submit(row)


async def _counter(engine: AsyncEngine, start: datetime) -> tuple[Decimal, Decimal]:
    c = table(BudgetCounter)
    stmt = select(c.c.spent_usd, c.c.reserved_usd + c.c.reserved_prev_usd).where(
        c.c.tenant_id == "t", c.c.period_start == start
    )
    async with engine.connect() as conn:
        row = (await conn.execute(stmt)).one()
    return Decimal(str(row[0])), Decimal(str(row[1]))


async def test_a_request_running_at_midnight_holds_the_new_periods_budget(
    engine: AsyncEngine, clock: list[datetime], tmp_path: Path
) -> None:
    book = BudgetBook(engine)
    writer = LedgerWriter(engine, tmp_path / "spool", settling=book.settling)
    stage = _stage(book)
    try:
        running = await _admit(stage)  # began before midnight, still streaming after it
        assert running is not None
        reserved = running.reserved_usd
        clock[0] = AFTER
        second = await _admit(stage)  # the new day's first: room beside the one running
        third = await _admit(stage)  # the new day cannot hold three reservations' worth
        assert second is not None
        assert third is None, "the new day admitted a budget beside the request still running"
        end = AFTER + timedelta(seconds=30)
        _finish(stage, writer, running, end)
        _finish(stage, writer, second, end)
        await writer.flush()
        new_day, old_day = datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)
        # both ended in the new day, and only there is anything spent; nothing stays reserved
        assert await _counter(engine, new_day) == (2 * reserved, Decimal(0))
        assert (await _counter(engine, old_day))[1] == 0
    finally:
        await writer.aclose()
        await book.aclose()


async def test_another_processs_request_running_at_midnight_is_carried_into_the_new_period(
    engine: AsyncEngine, clock: list[datetime], tmp_path: Path
) -> None:
    """The process taking the new day's requests is not the one whose request is running:
    that one's keeper moves the reservation (here within a quarter of a 1 s lifetime)."""
    running_here = BudgetBook(engine, reservation_ttl_s=1.0)
    elsewhere = BudgetBook(engine, reservation_ttl_s=1.0)
    writer = LedgerWriter(engine, tmp_path / "spool", settling=running_here.settling)
    stage = _stage(running_here)
    try:
        running = await _admit(stage)
        assert running is not None
        clock[0] = AFTER
        new_day = datetime(2026, 12, 1, tzinfo=UTC)
        await wait_until(lambda: _reserved_in(engine, new_day), running.reserved_usd)
        other = _stage(elsewhere)
        assert await _admit(other) is not None
        assert await _admit(other) is None
        _finish(stage, writer, running, AFTER + timedelta(seconds=30))
        await writer.flush()
        assert (await _counter(engine, datetime(2026, 11, 30, tzinfo=UTC)))[1] == 0
        assert await _counter(engine, new_day) == (running.reserved_usd, running.reserved_usd)
    finally:
        await writer.aclose()
        await running_here.aclose()
        await elsewhere.aclose()


async def _reserved_in(engine: AsyncEngine, start: datetime) -> Decimal:
    try:
        return (await _counter(engine, start))[1]
    except NoResultFound:
        return Decimal(0)


async def wait_until(read: Callable[[], Awaitable[Decimal]], want: Decimal) -> None:
    for _ in range(200):
        if await read() == want:
            return
        await asyncio.sleep(0.05)
    assert await read() == want
