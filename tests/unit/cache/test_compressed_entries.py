"""Answers produced from a compressed prompt: who may be served them, and what a hit on one
saved. The cache stage runs before compression, so it sees each request as the client sent it.

Against a real (SQLite) cache table; the compress stage's work is stood in for by setting what
it records on the context (the tiktoken counts before and after).
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.cache.response_cache import CacheConfig, ResponseCache
from gateway.cache.store import CacheStore
from gateway.db.migrate import upgrade_head
from gateway.db.session import create_engine
from gateway.pipeline.account import AccountStage
from gateway.pipeline.cache import CacheStage
from gateway.pipeline.context import Reply, RequestContext, Usage
from gateway.routing.catalog import Catalog
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context

CATALOG = Catalog.build(
    [
        DeploymentConfig(
            name="d",
            model="m",
            input_cost_per_mtok=Decimal("0.15"),
            output_cost_per_mtok=Decimal("0.60"),
            default=True,
        )
    ]
)
DOCUMENT = "A long report. " * 400
BODY = {
    "model": "m",
    "messages": [
        {"role": "user", "content": DOCUMENT},
        {"role": "assistant", "content": "Read it."},
        {"role": "user", "content": "What does the report conclude?"},
    ],
}
ANSWER = {
    "object": "chat.completion",
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "It concludes X."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 831, "completion_tokens": 20, "total_tokens": 851},
}


@pytest.fixture
async def caches(tmp_path: Path) -> AsyncIterator[tuple[ResponseCache, ResponseCache]]:
    """Two replicas on one table (the second sees the first's rows by polling)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'cache.db'}"
    await upgrade_head(url)
    engine = create_engine(url)
    config = CacheConfig(semantic=False, poll_interval_s=3600)
    a = ResponseCache(CacheStore(engine), None, config)
    b = ResponseCache(CacheStore(engine), None, config)
    await a.load()
    await b.load()
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()
        await engine.dispose()


def request(ledger_id: str, **fields: Any) -> RequestContext:
    return bare_context(body=copy.deepcopy(BODY), ledger_id=ledger_id, **fields)


async def miss_compressed(stage: CacheStage, ctx: RequestContext) -> None:
    """A miss that the compress stage cut from 1,885 to 831 tokens, answered and stored."""
    assert await stage.before(ctx) is None and ctx.cache_status == "miss"
    ctx.compression_method = "balanced"
    ctx.prompt_tokens_original, ctx.prompt_tokens_compressed = 1885, 831
    ctx.deployment = CATALOG.default_for("m")
    ctx.usage = Usage(prompt_tokens=831, completion_tokens=20)
    await stage.after(ctx, Reply(body=copy.deepcopy(ANSWER)))


@pytest.mark.parametrize(
    ("default_mode", "flags"),
    [("off", {"compression": "balanced"}), ("balanced", {})],
)
async def test_a_request_that_turns_compression_off_is_not_served_a_compressed_answer(
    caches: tuple[ResponseCache, ResponseCache], default_mode: str, flags: dict[str, Any]
) -> None:
    cache, _ = caches
    stage = CacheStage(cache, CATALOG, compress_default=default_mode)
    await miss_compressed(stage, request("l1", flags=flags))
    same = request("l2", flags=flags)
    assert isinstance(await stage.before(same), Reply) and same.cache_status == "hit-exact"
    off = request("l3", flags=flags, headers={"x-thriftgate-compress": "off"})
    assert await stage.before(off) is None and off.cache_status == "miss"
    # a different cut of the prompt is a different prompt too
    harder = request("l4", flags=flags, headers={"x-thriftgate-compress-ratio": "8"})
    assert await stage.before(harder) is None and harder.cache_status == "miss"


async def test_a_hit_on_a_compressed_answer_claims_the_uncompressed_prompt_like_the_miss(
    caches: tuple[ResponseCache, ResponseCache],
) -> None:
    """The counterfactual is the uncompressed prompt at the default deployment, on the miss
    that stored the answer and on every hit of it, on this replica and on another."""
    a, b = caches
    account = AccountStage(CATALOG, None, None)  # type: ignore[arg-type]  # pricing only
    flags = {"compression": "balanced"}
    miss = request("l1", flags=flags)
    await miss_compressed(CacheStage(a, CATALOG), miss)
    account._price(miss)
    dep = CATALOG.default_for("m")
    assert dep is not None
    assert miss.counterfactual_cost_usd == dep.cost_usd(1885, 20)  # 831 sent + 1,054 removed
    await a.aclose()  # waits for the row to be written
    await b.sync_once()
    for cache in (a, b):
        hit = request("l2", flags=flags)
        reply = await CacheStage(cache, CATALOG).before(hit)
        assert reply is not None and reply.body is not None
        assert set(reply.body) == {*ANSWER, "id", "created"}  # the answer, nothing of ours
        account._price(hit)
        assert hit.cache_status == "hit-exact" and hit.usage.prompt_tokens == 831
        assert hit.counterfactual_cost_usd == miss.counterfactual_cost_usd
        assert hit.savings.cache_usd == miss.counterfactual_cost_usd
