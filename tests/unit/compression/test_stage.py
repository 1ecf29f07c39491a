"""The Compress stage on a real RequestContext and catalog (no upstream needed)."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest

from gateway.accounting.tokenizer import count_messages, estimate_prompt_tokens
from gateway.compression import PromptCompressor, TiktokenCounter
from gateway.compression.surprisal import local_model_available
from gateway.errors import InvalidRequest
from gateway.pipeline.compress import HEADER, NOTE_HEADER, CompressStage, create_compress_stage
from gateway.pipeline.context import RequestContext
from gateway.routing.catalog import Catalog
from gateway.settings import DeploymentConfig, FileConfig, TenantDefaults
from tests.support.context import bare_context
from tests.unit.compression.test_compressor import GOLD, rag_messages

CATALOG = Catalog.build(
    [
        DeploymentConfig(
            name="cheap",
            model="m",
            input_cost_per_mtok=Decimal("0.5"),
            output_cost_per_mtok=Decimal("1"),
        ),
        DeploymentConfig(
            name="default",
            model="m",
            input_cost_per_mtok=Decimal("2"),
            output_cost_per_mtok=Decimal("8"),
            default=True,
        ),
    ]
)


def make_ctx(headers: dict[str, str], flags: dict[str, Any] | None = None) -> RequestContext:
    messages = rag_messages(random.Random(1))
    # Pasted text full of stray whitespace, so even lossless has something to do.
    messages[1]["content"] = messages[1]["content"].replace(". ", ".   \n\n\n   ")
    body = {"model": "m", "messages": messages}
    ctx = bare_context(body=body, flags=flags, headers=headers)
    ctx.candidates = CATALOG.group("m")
    ctx.prompt_tokens_estimate = estimate_prompt_tokens(body)
    return ctx


async def test_balanced_header_rewrites_messages_and_records_everything() -> None:
    stage = create_compress_stage(CATALOG, FileConfig())
    ctx = make_ctx({"x-thriftgate-compress": "balanced", "x-thriftgate-compress-ratio": "3"})
    original_messages = list(ctx.body["messages"])
    assert await stage.before(ctx) is None
    assert ctx.compression_method == "balanced"
    original = ctx.prompt_tokens_original
    assert ctx.prompt_tokens_compressed is not None
    # Same counter as the gateway's tokenizer: the removed tokens agree exactly (names and
    # tool calls are never touched, so only content differs).
    assert abs(original - count_messages(original_messages)) <= 4
    removed_by_counter = count_messages(original_messages) - count_messages(ctx.body["messages"])
    assert original - ctx.prompt_tokens_compressed == removed_by_counter
    assert ctx.prompt_tokens_compressed < original / 2
    assert ctx.prompt_tokens_estimate == estimate_prompt_tokens(ctx.body)
    removed = original - ctx.prompt_tokens_compressed
    # Priced at the group's default deployment ($2/Mtok), not the cheapest.
    assert ctx.savings.compression_usd == Decimal(removed) * 2 / 1_000_000
    method, counts = ctx.extra_headers[HEADER].split(" ")
    assert method == "balanced"
    assert counts == f"{original}->{ctx.prompt_tokens_compressed}"
    assert GOLD in ctx.body["messages"][1]["content"]


async def test_tenant_flag_and_config_default_choose_the_mode() -> None:
    stage = create_compress_stage(
        CATALOG, FileConfig(tenant_defaults=TenantDefaults(compression="lossless"))
    )
    ctx = make_ctx({})
    await stage.before(ctx)
    assert ctx.compression_method == "lossless"
    ctx = make_ctx({}, {"compression": "off"})
    before = [dict(m) for m in ctx.body["messages"]]
    await stage.before(ctx)
    assert ctx.compression_method is None and ctx.body["messages"] == before
    assert HEADER not in ctx.extra_headers


async def test_aggressive_without_model_reports_fallback() -> None:
    stage = CompressStage(PromptCompressor(TiktokenCounter()), CATALOG)  # no pruner
    ctx = make_ctx({"x-thriftgate-compress": "aggressive"})
    await stage.before(ctx)
    assert ctx.compression_method == "balanced"
    assert "aggressive unavailable" in ctx.extra_headers[NOTE_HEADER]


@pytest.mark.slow
@pytest.mark.skipif(not local_model_available(), reason="local model packages not installed")
async def test_aggressive_with_the_local_model_prunes_beyond_balanced() -> None:
    stage = create_compress_stage(CATALOG, FileConfig())
    ctx = make_ctx({"x-thriftgate-compress": "aggressive"})
    await stage.before(ctx)
    ref = make_ctx({"x-thriftgate-compress": "balanced"})
    await create_compress_stage(CATALOG, FileConfig()).before(ref)
    assert ctx.compression_method == "aggressive"
    assert ctx.prompt_tokens_compressed is not None and ref.prompt_tokens_compressed is not None
    assert ctx.prompt_tokens_compressed < ref.prompt_tokens_compressed
    assert "Margarethe Voss" in ctx.body["messages"][1]["content"]


async def test_bad_mode_header_is_a_400() -> None:
    stage = create_compress_stage(CATALOG, FileConfig())
    with pytest.raises(InvalidRequest):
        await stage.before(make_ctx({"x-thriftgate-compress": "extreme"}))
