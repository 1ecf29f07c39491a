"""A hit avoids what the stored answer cost, prompt-cache discount included."""

from datetime import UTC, datetime
from decimal import Decimal

import orjson

from gateway.cache.store import StoredEntry
from gateway.pipeline.cache import CacheStage
from gateway.routing.catalog import Catalog
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context


def test_a_hit_on_an_answer_the_provider_partly_cached_claims_only_what_it_cost() -> None:
    catalog = Catalog.build(
        [
            DeploymentConfig(
                name="d",
                model="m",
                input_cost_per_mtok=Decimal(2),
                output_cost_per_mtok=Decimal(8),
                cached_input_cost_per_mtok=Decimal("0.5"),
                default=True,
            )
        ]
    )
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "prompt_tokens_details": {"cached_tokens": 800},
    }
    body = {"object": "chat.completion", "choices": [], "usage": usage}
    entry = StoredEntry(
        id="e", tenant_id="t", scope="s", key="k", model="m", query=None, embedding=None,
        response=orjson.dumps(body), prompt_tokens=1000, completion_tokens=500,
        cost_usd=Decimal("0.0048"), created_at=datetime.now(UTC), expires_at=None,
    )  # fmt: skip
    ctx = bare_context()
    CacheStage(None, catalog)._hit(ctx, entry, "hit-exact", None)  # type: ignore[arg-type]
    # 200 fresh at $2 + 800 cached at $0.5 + 500 out at $8, per million
    assert ctx.counterfactual_cost_usd == ctx.savings.cache_usd == Decimal("0.0048")
    assert ctx.usage.cached_tokens == 800 and ctx.cost_usd == 0
