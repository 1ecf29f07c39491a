"""Image tokens priced apart from text (Gemini's image models), billed and reserved (hunt11
h111)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from gateway.accounting.pricing import resolve_price
from gateway.pipeline.context import TenantInfo
from gateway.pipeline.limits import BudgetStage
from gateway.routing.catalog import Catalog
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context
from tests.unit.pipeline.fakes import Book

CONFIG = DeploymentConfig(
    name="d", model="m", provider="gemini", upstream_model="gemini-2.5-flash-image"
)


def test_image_tokens_of_the_answer_cost_the_image_price() -> None:
    price, _ = resolve_price(CONFIG)
    assert (price.output_per_mtok, price.image_output_per_mtok) == (Decimal("2.5"), 30)
    assert (
        price.cost_usd(0, 1300, image_completion_tokens=1290)
        == (10 * Decimal("2.5") + 1290 * 30) / 1_000_000
    )
    assert price.cost_usd(0, 10, image_completion_tokens=1290) == 10 * 30 / Decimal(1_000_000)


def test_an_answer_asked_with_images_is_reserved_at_the_image_price() -> None:
    catalog = Catalog.build([CONFIG])

    def reserved(**body: object) -> Decimal:
        book = Book()
        stage = BudgetStage(book, catalog, fail_open=False)  # type: ignore[arg-type]
        ctx = bare_context(
            body={"model": "m", "messages": [], "max_tokens": 1000, **body},
            tenant=TenantInfo(id="t", name="t", key_id=None, budget_usd=Decimal(1)),
            candidates=list(catalog.group("m")),
        )
        asyncio.run(stage.before(ctx))
        return book.amounts[0]

    assert reserved(modalities=["image", "text"]) - reserved() == 1000 * Decimal("27.5") / 10**6
