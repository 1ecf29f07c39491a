"""`best_of` (legacy completions; vLLM takes it on chat too) makes the upstream generate that
many answers, each up to max_tokens, and bill them all: the budget reservation and the TPM
charge must count them, not only the `n` returned (hunt9 h2)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from gateway.pipeline.context import TenantInfo
from gateway.pipeline.limits import BudgetStage, _expected_completion
from gateway.routing.catalog import Catalog
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context
from tests.unit.pipeline.fakes import Book


def reserved(body: dict[str, Any]) -> Decimal:
    cfg = DeploymentConfig(
        name="d", model="m", input_cost_per_mtok=Decimal(0), output_cost_per_mtok=Decimal(1)
    )
    catalog = Catalog.build([cfg])
    book = Book()
    stage = BudgetStage(book, catalog, fail_open=False)  # type: ignore[arg-type]
    ctx = bare_context(
        body=body,
        endpoint="completions",
        tenant=TenantInfo(id="t", name="t", key_id=None, budget_usd=Decimal(1)),
        candidates=list(catalog.group("m")),
    )
    asyncio.run(stage.before(ctx))
    return book.amounts[0]


def test_best_of_is_reserved_for_every_answer_generated() -> None:
    one = reserved({"model": "m", "prompt": "x", "max_tokens": 100})
    assert reserved({"model": "m", "prompt": "x", "max_tokens": 100, "best_of": 5}) == 5 * one
    both = {"model": "m", "prompt": "x", "max_tokens": 100, "n": 2, "best_of": 4}
    assert reserved(both) == 4 * one


def test_best_of_counts_toward_the_tpm_charge() -> None:
    ctx = bare_context(body={"model": "m", "prompt": "x", "max_tokens": 100, "best_of": 3})
    assert _expected_completion(ctx) == 300


def test_every_prompt_of_a_legacy_completions_list_is_reserved() -> None:
    """8 requests of 20 prompts each spent $0.096 of a $0.01 budget: one answer was reserved
    per request while the upstream generated (and billed) one per prompt (hunt9 h3)."""
    one = reserved({"model": "m", "prompt": "x", "max_tokens": 100})
    assert reserved({"model": "m", "prompt": ["x"] * 20, "max_tokens": 100}) == 20 * one
    tokens = {"model": "m", "prompt": [[1, 2], [3, 4], [5]], "max_tokens": 100, "n": 2}
    assert reserved(tokens) == 6 * one
    assert reserved({"model": "m", "prompt": [1, 2, 3], "max_tokens": 100}) == one  # one prompt
    body = {"model": "m", "prompt": ["a", "b"], "max_tokens": 100}
    assert _expected_completion(bare_context(body=body, endpoint="completions")) == 200
