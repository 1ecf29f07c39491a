"""Compress stage: rewrite the chat messages before routing, when the tenant or request asks.

Mode: header `x-thriftgate-compress` (and `x-thriftgate-compress-ratio`), else the tenant's
`compression` flag, else the config's tenant default. The work runs in a worker thread.

Savings are estimated here with the input price of the group's default deployment (routing
comes after compression, so the served deployment is not known yet); the account stage prices
the same removed tokens the same way once the request is done.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

from gateway.accounting.tokenizer import count_prompt, estimate_prompt_tokens
from gateway.compression import (
    CompressionOptions,
    CompressionResult,
    Embedder,
    PrefixMemory,
    PromptCompressor,
    Pruner,
    TiktokenCounter,
    resolve_options,
)
from gateway.compression.surprisal import LocalModelPruner, local_model_available
from gateway.pipeline.context import Reply, RequestContext
from gateway.routing.catalog import Catalog
from gateway.settings import FileConfig

log = logging.getLogger("thriftgate.compress")

HEADER = "x-thriftgate-compression"
NOTE_HEADER = "x-thriftgate-compression-note"


class CompressStage:
    def __init__(
        self, compressor: PromptCompressor, catalog: Catalog, default_mode: str = "off"
    ) -> None:
        self.compressor = compressor
        self.catalog = catalog
        self.default_mode = default_mode

    async def before(self, ctx: RequestContext) -> Reply | None:
        if ctx.endpoint != "chat" or not isinstance(ctx.body.get("messages"), list):
            return None
        options = resolve_options(ctx.headers, ctx.tenant.flags, self.default_mode)
        if options.mode == "off":
            return None
        price = self._input_price(ctx)
        result, sent = await asyncio.to_thread(self._compress, ctx, options, price)
        self._record(ctx, result, sent)
        return None

    async def after(self, ctx: RequestContext, reply: Reply) -> None:
        return None

    def _compress(
        self, ctx: RequestContext, options: CompressionOptions, price: Decimal | None
    ) -> tuple[CompressionResult, int]:
        """The result, and the tiktoken count of the whole prompt it leaves to send: message
        framing, names, tool calls and tool definitions too, which the upstream's count holds
        and the compressor's (the messages' text) does not."""
        result = self.compressor.compress(
            ctx.body["messages"],
            options,
            input_price_per_mtok=price,
            scope=f"{ctx.tenant.id}\x00{ctx.model}",
        )
        sent = count_prompt({**ctx.body, "messages": result.messages}) if result.changed else 0
        return result, sent

    def _input_price(self, ctx: RequestContext) -> Decimal | None:
        dep = self.catalog.default_for(ctx.model)
        if dep is None and ctx.candidates:
            dep = self.catalog.default_for(ctx.candidates[0].model) or ctx.candidates[0]
        if dep is None:
            return None
        return dep.price.at_prompt(ctx.prompt_tokens_estimate).input_per_mtok  # long context

    def _record(self, ctx: RequestContext, result: CompressionResult, sent: int) -> None:
        if result.notes:
            ctx.extra_headers[NOTE_HEADER] = "; ".join(result.notes)
        if not result.changed:
            return
        ctx.body["messages"] = result.messages
        # tiktoken counts of the whole prompt (framing and tools included), before and after:
        # the account stage scales what was cut by the upstream's count over the second
        ctx.compression_method = result.method
        ctx.prompt_tokens_original = sent + result.tokens_before - result.tokens_after
        ctx.prompt_tokens_compressed = sent
        ctx.prompt_tokens_estimate = estimate_prompt_tokens(ctx.body)  # routing prices what is sent
        ctx.savings.compression_usd = result.saved_usd
        ctx.extra_headers[HEADER] = (
            f"{result.method} {ctx.prompt_tokens_original}->{ctx.prompt_tokens_compressed}"
        )
        log.debug("compressed %s: %s", ctx.request_id, result.header)


def create_compress_stage(
    catalog: Catalog,
    file_config: FileConfig,
    *,
    embedder: Embedder | None = None,
    pruner: Pruner | None = None,
) -> CompressStage:
    """The stage as the app runs it: tiktoken counts, a prefix memory, optional models.

    Without an explicit pruner, aggressive mode uses the local engine's SmolLM2 when its
    packages are installed (loaded on the first aggressive request, in a worker thread).
    """
    if pruner is None and local_model_available():
        pruner = LocalModelPruner()
    compressor = PromptCompressor(
        TiktokenCounter(), embedder=embedder, pruner=pruner, memory=PrefixMemory()
    )
    return CompressStage(compressor, catalog, default_mode=file_config.tenant_defaults.compression)
