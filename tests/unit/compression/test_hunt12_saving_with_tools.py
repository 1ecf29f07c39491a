"""Compression's saving for a request that carries tools (hardening round 11).

The upstream's `prompt_tokens` counts the whole prompt, tool definitions included. The removed
count is scaled by the upstream's count over the gateway's own count of the prompt it sent
(tokenizers differ), so that count must be of the same whole prompt: taken over the messages'
text alone, an agent's 20 tool schemas made the ratio ~2x and the claimed saving with it.
"""

from __future__ import annotations

import random
from decimal import Decimal

from gateway.accounting.tokenizer import count_prompt
from gateway.pipeline.account import AccountStage, tokens_removed
from gateway.pipeline.compress import create_compress_stage
from gateway.pipeline.context import Usage
from gateway.settings import FileConfig
from tests.support.context import bare_context
from tests.unit.compression.test_compressor import rag_messages
from tests.unit.compression.test_stage import CATALOG

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": f"tool_{i}",
            "description": f"Looks up record kind {i} in the warehouse inventory by its id.",
            "parameters": {
                "type": "object",
                "properties": {"id": {"type": "string", "description": "The record's id."}},
                "required": ["id"],
            },
        },
    }
    for i in range(40)
]


async def test_the_saving_scales_by_the_whole_prompts_count_tools_included() -> None:
    body = {"model": "m", "messages": rag_messages(random.Random(1)), "tools": TOOLS}
    ctx = bare_context(body=body, headers={"x-thriftgate-compress": "balanced"})
    ctx.candidates = CATALOG.group("m")
    original = count_prompt(body)
    await create_compress_stage(CATALOG, FileConfig()).before(ctx)
    assert ctx.compression_method == "balanced"
    sent = count_prompt(ctx.body)
    assert count_prompt({"messages": [], "tools": TOOLS}) > sent / 2  # the tools weigh
    # An upstream that counts as tiktoken does (OpenAI): the removed tokens need no scaling.
    ctx.deployment = CATALOG.default_for("m")
    ctx.usage = Usage(prompt_tokens=sent, completion_tokens=10, source="upstream")
    assert abs(tokens_removed(ctx) - (original - sent)) <= 4
    AccountStage(CATALOG, None, None)._price(ctx)  # type: ignore[arg-type]
    claimed = ctx.savings.compression_usd / Decimal(2) * 1_000_000  # default's $2 per 1M in
    assert abs(claimed - (original - sent)) <= 4


def test_a_prompt_with_an_image_is_not_scaled_by_what_tiktoken_cannot_count() -> None:
    """The upstream's count holds the image's tokens (765 for a 1024px one on gpt-4o), which
    tiktoken's count of the sent prompt has not: the ratio says nothing of the tokenizer then,
    and the cut is claimed as tiktoken counted it."""
    image = {"type": "image_url", "image_url": {"url": "https://example.com/chart.png"}}
    text = {"type": "text", "text": "What does the chart say about revenue?"}
    ctx = bare_context(
        body={"model": "m", "messages": [{"role": "user", "content": [image, text]}]}
    )
    ctx.prompt_tokens_original, ctx.prompt_tokens_compressed = 3000, 1000  # 2,000 cut
    ctx.usage = Usage(prompt_tokens=1000 + 765, completion_tokens=10, source="upstream")
    assert tokens_removed(ctx) == 2000  # not 3,530
