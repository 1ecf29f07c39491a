"""An uncapped request to a local engine reserves at most the answer the engine can give (its
default_max_tokens, 256 unless set), not the generic 4,096-token long answer."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from gateway.pipeline.context import TenantInfo
from gateway.pipeline.limits import BudgetStage
from gateway.routing.catalog import Catalog
from gateway.routing.router import Router
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context
from tests.unit.pipeline.fakes import Book


def reserved(options: dict[str, Any], body: dict[str, Any]) -> tuple[Decimal, Decimal]:
    """(reserved, the cost of one token at the dearest price) for a lone local deployment."""
    cfg = DeploymentConfig(
        name="smol",
        model="m",
        provider="local",
        hardware_usd_per_hour=Decimal("3.6"),
        options=options,
    )
    catalog = Catalog.build([cfg])
    router = Router(catalog)
    book = Book()
    stage = BudgetStage(book, catalog, fail_open=False, router=router)  # type: ignore[arg-type]
    ctx = bare_context(
        body=body,
        tenant=TenantInfo(id="t", name="t", key_id=None, budget_usd=Decimal("0.05")),
        candidates=list(catalog.group("m")),
    )
    ctx.prompt_tokens_estimate = 10
    asyncio.run(stage.before(ctx))
    per_token = stage._dearest_cost(catalog.deployments["smol"], 0, 1)
    return book.amounts[0], per_token


def test_uncapped_reservation_stops_at_the_engines_answer_limit() -> None:
    amount, per_token = reserved({}, {})
    # 10 prompt tokens + 256 answer tokens (default_max_tokens), not 4,096
    assert amount <= (10 + 256) * per_token + Decimal("1e-9")


def test_a_larger_default_max_tokens_is_reserved_for() -> None:
    small, _ = reserved({}, {})
    large, _ = reserved({"default_max_tokens": 1000}, {})
    assert large > small


def test_an_explicit_max_tokens_is_reserved_as_sent() -> None:
    amount, per_token = reserved({}, {"max_tokens": 1500})
    assert amount >= 1500 * per_token
