"""Budget reservations of requests without `max_tokens` (the SDK default): the reservation must
cover a long answer, or every request admitted beside it overspends by the difference (a $0.01
budget ended at $0.06 with 3,000-token answers reserved at 512)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.budgets import BudgetBook
from gateway.db.migrate import upgrade_head
from gateway.db.session import create_engine
from gateway.errors import BudgetExceeded
from gateway.pipeline.context import TenantInfo
from gateway.pipeline.limits import MIN_LEARNED_ANSWERS, BudgetStage
from gateway.routing.catalog import Catalog
from gateway.routing.router import Router
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context

pytestmark = pytest.mark.integration

BUDGET = Decimal("0.01")
PROMPT = 10
ANSWER = 3000  # what every upstream answer is in these tests


@pytest.fixture
async def engine(fresh_pg_url: str) -> AsyncIterator[AsyncEngine]:
    await upgrade_head(fresh_pg_url)
    eng = create_engine(fresh_pg_url, pool_size=4)
    async with eng.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO tenants (id, name, budget_usd, budget_period, flags, created_at) "
                "VALUES ('t', 't', :b, 'monthly', '{}', now())"
            ),
            {"b": BUDGET},
        )
    yield eng
    await eng.dispose()


@pytest.fixture
async def book(engine: AsyncEngine) -> AsyncIterator[BudgetBook]:
    budgets = BudgetBook(engine)
    yield budgets
    await budgets.aclose()


def _catalog() -> Catalog:
    return Catalog.build(
        [
            DeploymentConfig(
                name="solo",
                model="m",
                api_base="http://127.0.0.1:1/v1",
                input_cost_per_mtok=Decimal(1),
                output_cost_per_mtok=Decimal(4),
            )
        ]
    )


async def _admit(
    stage: BudgetStage, body: dict[str, object], budget: Decimal = BUDGET
) -> Decimal | None:
    """One request through the budget stage: its reservation, or None when refused."""
    tenant = TenantInfo(id="t", name="t", key_id=None, budget_usd=budget)
    ctx = bare_context(body=body, tenant=tenant, prompt_tokens_estimate=PROMPT)
    try:
        await stage.before(ctx)
    except BudgetExceeded:
        return None
    return ctx.reserved_usd


async def test_concurrent_uncapped_requests_overspend_by_at_most_one_estimate(
    book: BudgetBook,
) -> None:
    catalog = _catalog()
    stage = BudgetStage(book, catalog, fail_open=False, router=Router(catalog))
    got = await asyncio.gather(*(_admit(stage, {}) for _ in range(20)))
    admitted = [amount for amount in got if amount is not None]
    spent = len(admitted) * catalog.group("m")[0].cost_usd(PROMPT, ANSWER)
    assert admitted and spent <= BUDGET + max(admitted)


async def test_a_learned_long_answer_is_reserved_even_with_a_small_default(
    book: BudgetBook,
) -> None:
    catalog = _catalog()
    router = Router(catalog)
    router.completion_estimate("m", None)  # the model's learned lengths, as dispatch feeds them
    for _ in range(MIN_LEARNED_ANSWERS):
        router.lengths["m"].observe(ANSWER, PROMPT)
    stage = BudgetStage(book, catalog, fail_open=False, router=router, uncapped_completion=512)
    amount = await _admit(stage, {})
    assert amount == catalog.group("m")[0].cost_usd(PROMPT, ANSWER)


async def test_learned_short_answers_reserve_less_than_the_default(book: BudgetBook) -> None:
    catalog = _catalog()
    router = Router(catalog)
    router.completion_estimate("m", None)
    stage = BudgetStage(book, catalog, fail_open=False, router=router)
    roomy = Decimal(100)
    cold = await _admit(stage, {}, roomy)
    for _ in range(MIN_LEARNED_ANSWERS):
        router.lengths["m"].observe(100, PROMPT)
    learned = await _admit(stage, {}, roomy)
    capped = await _admit(stage, {"max_tokens": 50, "n": 2}, roomy)
    dep = catalog.group("m")[0]
    assert learned == dep.cost_usd(PROMPT, 100) and cold is not None and cold > learned
    assert capped == dep.cost_usd(PROMPT, 100)  # max_tokens x n: the hard cap, as before
