"""The account stage's figures: what the client sees equals what the ledger stores."""

from __future__ import annotations

from decimal import Decimal

from gateway.pipeline.account import AccountStage
from gateway.pipeline.context import Usage
from gateway.routing.catalog import Catalog
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context

TEN_PLACES = Decimal("1e-10")  # the ledger's NUMERIC(20,10)


def stage(**prices: Decimal) -> tuple[AccountStage, Catalog]:
    catalog = Catalog.build(
        [DeploymentConfig(name="d", model="m", default=True, **prices)]  # type: ignore[arg-type]
    )
    return AccountStage(catalog, None, None), catalog  # type: ignore[arg-type]


def test_the_figures_have_the_ledgers_ten_decimal_places_and_still_add_up() -> None:
    account, catalog = stage(
        input_cost_per_mtok=Decimal("0.123456789123"),
        output_cost_per_mtok=Decimal("0.987654321987"),
    )
    ctx = bare_context(deployment=catalog.default_for("m"))
    ctx.usage = Usage(prompt_tokens=7, completion_tokens=3)
    ctx.prompt_tokens_original, ctx.prompt_tokens_compressed = 12, 7
    account._price(ctx)
    figures = (ctx.cost_usd, ctx.counterfactual_cost_usd, ctx.savings.compression_usd)
    for value in figures:
        assert value == value.quantize(TEN_PLACES), value
    assert ctx.cost_usd == Decimal("0.0000038272")  # 3.82716049... rounded as Postgres does
    assert ctx.cost_usd + ctx.savings.total_usd == ctx.counterfactual_cost_usd


def test_compression_savings_count_the_upstreams_tokens_not_tiktokens() -> None:
    account, catalog = stage(input_cost_per_mtok=Decimal(1), output_cost_per_mtok=Decimal(4))
    ctx = bare_context(deployment=catalog.default_for("m"))
    # tiktoken: 2839 before compression, 1156 after; the upstream counted the 1156 as 848
    ctx.prompt_tokens_original, ctx.prompt_tokens_compressed = 2839, 1156
    ctx.usage = Usage(prompt_tokens=848, completion_tokens=10, source="upstream")
    account._price(ctx)
    removed = round(1683 * 848 / 1156)  # 1235 upstream tokens, not 1683
    assert ctx.savings.compression_usd == Decimal(removed) / 1_000_000
    # without the upstream's count, tiktoken's is all there is
    ctx.usage = Usage(prompt_tokens=1156, completion_tokens=10, source="tiktoken")
    account._price(ctx)
    assert ctx.savings.compression_usd == Decimal(1683) / 1_000_000
