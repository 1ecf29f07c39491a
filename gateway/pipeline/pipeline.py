"""The request pipeline, in one direction:

    auth -> validate -> resolve model -> [account, rate limits, cache, budget, compress, route]
      -> dispatch

`before` hooks run in list order and may end the request early (a cache hit); `after` hooks run
in reverse, so `account` (first in the list) sees every other stage's decisions and writes the
ledger row last. For a stream, the `after` hooks run once its last chunk has passed, before the
API layer sends `[DONE]`, so the ledger row is spooled before the client has the whole answer.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

from gateway.accounting.pricing import usd_text
from gateway.accounting.tokenizer import estimate_prompt_tokens
from gateway.compression.options import check_headers as check_compression_headers
from gateway.errors import (
    INTERNAL_ERROR,
    GatewayError,
    InvalidRequest,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.pipeline.account import usage_of
from gateway.pipeline.context import (
    ApiName,
    EndpointName,
    Json,
    Reply,
    RequestContext,
    Stage,
    TenantInfo,
    Usage,
)
from gateway.pipeline.dispatch import Dispatcher
from gateway.pipeline.hangup import cancel_verdict
from gateway.pipeline.responses_request import chat_body_from_responses, responses_param
from gateway.pipeline.route import resolve_candidates
from gateway.pipeline.stream import PRICED, StreamAssembler, carries_output
from gateway.pipeline.validate import validate_chat, validate_completion, validate_embedding
from gateway.routing.catalog import Catalog
from gateway.settings import FileConfig

log = logging.getLogger("thriftgate.pipeline")

# Each API: the endpoint whose stages serve it, and what turns its body into that endpoint's.
APIS: dict[ApiName, tuple[EndpointName, Callable[[Any], Json]]] = {
    "chat": ("chat", validate_chat),
    "completions": ("completions", validate_completion),
    "embeddings": ("embeddings", validate_embedding),
    "responses": ("chat", chat_body_from_responses),
}
MAX_REQUEST_ID = 128
MAX_SLO_MS = 3_600_000


class Pipeline:
    def __init__(
        self,
        *,
        catalog: Catalog,
        file_config: FileConfig,
        stages: Sequence[Stage],
        dispatcher: Dispatcher,
    ) -> None:
        self.catalog = catalog
        self.file_config = file_config
        self.stages = list(stages)
        self.dispatcher = dispatcher

    async def handle(
        self, api: ApiName, body: Any, headers: dict[str, str], tenant: TenantInfo
    ) -> tuple[RequestContext, Reply]:
        """Run one request of `tenant` (authenticated by the caller before it decoded the
        body). Raises GatewayError for failures before any byte is sent."""
        endpoint, validate = APIS[api]
        body = validate(body)
        model: str = body["model"]
        ctx = RequestContext(
            request_id=request_id_from(headers),
            ledger_id=uuid.uuid4().hex,
            endpoint=endpoint,
            api=api if api != endpoint else None,
            body=body,
            tenant=tenant,
            model=model,
            headers=headers,
        )
        ctx.candidates = resolve_candidates(model, tenant, self.catalog, self.file_config)
        ctx.slo_ms = slo_from(headers, tenant.default_slo_ms)
        check_compression_headers(headers)
        if endpoint != "embeddings" and body.get("stream"):
            ctx.stream = True
            opts = body.get("stream_options") or {}
            ctx.client_wants_usage = bool(opts.get("include_usage"))
            # Always ask for usage so the ledger has real counts; stripped again if not asked.
            body["stream_options"] = {**opts, "include_usage": True}
        ctx.prompt_tokens_estimate = estimate_prompt_tokens(body)
        if api != "responses":
            return ctx, await self.run(ctx)
        # A Responses client sent `input` and `max_output_tokens`: errors name those.
        try:
            reply = await self.run(ctx)
        except GatewayError as exc:
            exc.param = responses_param(exc.param)
            raise
        error = reply.body.get("error") if isinstance(reply.body, dict) else None
        if reply.status_code >= 400 and isinstance(error, dict):
            error["param"] = responses_param(error.get("param"))
        return ctx, reply

    async def run(self, ctx: RequestContext) -> Reply:
        entered: list[Stage] = []
        try:
            reply: Reply | None = None
            for stage in self.stages:
                entered.append(stage)
                reply = await stage.before(ctx)
                if reply is not None:
                    break
            if reply is None:
                reply = await self.dispatcher.dispatch(ctx)
        except GatewayError as exc:
            ctx.status_code = exc.status_code
            ctx.error_code = exc.code
            if prompt_went_upstream(exc):
                bill_prompt_sent(ctx)
            await self._finish(ctx, entered, Reply(body=exc.body(), status_code=exc.status_code))
            # an error explains itself too: which deployment failed, and why it was chosen
            if ctx.deployment is not None:
                exc.headers.setdefault("x-thriftgate-deployment", ctx.deployment.name)
            if ctx.route_reason:
                exc.headers.setdefault("x-thriftgate-route-reason", ctx.route_reason)
            for name, value in ctx.extra_headers.items():  # the tenant's rate limits, as OpenAI
                if name.startswith("x-ratelimit-"):  # sends them on its errors too
                    exc.headers.setdefault(name, value)
            raise
        except asyncio.CancelledError:
            # The client hung up on a non-stream request (gateway/api/disconnect.py), or the
            # server is stopping (hangup.py): the upstream attempt is cancelled with this task.
            # Settle it as a stream cut short is settled: a 499 (503) row, the prompt billed
            # once it went upstream, the budget released.
            ctx.status_code, ctx.error_code = cancel_verdict()
            bill_prompt_sent(ctx)
            await _unstoppable(self._finish(ctx, entered, Reply(status_code=499)))
            raise
        except Exception:
            # A bug, not a verdict: the request still settles (its ledger row written, its
            # budget reservation released) before the API layer answers 500.
            failure = GatewayError(INTERNAL_ERROR)
            ctx.status_code, ctx.error_code = failure.status_code, failure.code
            await self._finish(ctx, entered, Reply(body=failure.body(), status_code=500))
            raise
        if reply.chunks is not None:
            reply.chunks = self._watch(ctx, reply.chunks, entered)
            return reply
        await self._finish(ctx, entered, reply)
        if ctx.status_code < 400:
            fill_missing_usage(ctx, reply.body)
        return reply

    async def _finish(self, ctx: RequestContext, entered: list[Stage], reply: Reply) -> None:
        if ctx.status_code < 400 and ctx.usage.source != "cache":
            ctx.usage = usage_of(ctx, reply.body)
        hung_up: asyncio.CancelledError | None = None
        for stage in reversed(entered):
            try:
                await stage.after(ctx, reply)
            except asyncio.CancelledError as exc:
                # The client hung up while a stage was storing the answer (the cache's worker):
                # the answer was billed upstream, so the stages after it (the slot in flight,
                # the ledger row: synchronous) still settle it; the hang-up is raised after.
                hung_up = exc
            except Exception:  # one stage's failure must not lose the ledger row
                log.exception("stage %s failed in after()", type(stage).__name__)
        if hung_up is not None:
            raise hung_up

    async def _watch(
        self, ctx: RequestContext, chunks: AsyncIterator[Json], entered: list[Stage]
    ) -> AsyncIterator[Json]:
        assembler = StreamAssembler()
        failed: GatewayError | None = None
        closing: Json | None = None  # the upstream's usage chunk, sent once the request is priced
        last: Json | None = None  # the latest chunk: the shape of a closing chunk made here
        try:
            async for chunk in chunks:
                if ctx.ttft_ms is None and carries_output(chunk):
                    ctx.ttft_ms = ctx.elapsed_ms()
                assembler.add(chunk)
                last = chunk
                if chunk.get("usage"):
                    if not chunk.get("choices"):
                        closing = chunk
                        continue
                    # usage on an answer chunk (the finish, or a running total on each): the
                    # client gets it once, in the closing chunk, as OpenAI sends it
                    chunk = {k: v for k, v in chunk.items() if k != "usage"}
                yield chunk
        except UpstreamError as exc:  # after the first byte: report in-band, never retry
            failed = exc
        except Exception:  # a bug mid-stream: end it with an error event, still settle
            log.exception("stream of request %s failed", ctx.request_id)
            failed = GatewayError(INTERNAL_ERROR)
        except (asyncio.CancelledError, GeneratorExit):
            ctx.status_code, ctx.error_code = cancel_verdict()
            self._finish_quietly(ctx, entered, assembler)
            await _aclose(chunks)
            raise
        # The upstream is done. From here on the request is settled whatever the client does:
        # one that closes the stream right after the finish chunk (the SDK's usual `break`)
        # must not cancel its ledger row half way through the stages' `after`.
        body = assembler.result(chat=ctx.endpoint == "chat")
        if failed is not None:
            if ctx.usage.source != "cache":
                # What streamed before the break reached the client and is billed upstream.
                ctx.usage = usage_of(ctx, body)
            ctx.status_code, ctx.error_code = failed.status_code, failed.code
        await _unstoppable(self._close_and_finish(chunks, ctx, entered, Reply(body=body)))
        if ctx.client_wants_usage:
            yield closing_chunk(ctx, closing, last, body.get("usage"))
        if failed is not None:
            yield failed.body()

    async def _close_and_finish(
        self, chunks: AsyncIterator[Json], ctx: RequestContext, entered: list[Stage], reply: Reply
    ) -> None:
        try:
            await _aclose(chunks)
        finally:
            await self._finish(ctx, entered, reply)

    def _finish_quietly(
        self, ctx: RequestContext, entered: list[Stage], assembler: StreamAssembler
    ) -> None:
        """The client went away mid-stream: account what was generated, synchronously."""
        body = assembler.result(chat=ctx.endpoint == "chat")
        ctx.usage = usage_of(ctx, body) if ctx.usage.source != "cache" else ctx.usage
        for stage in reversed(entered):
            account = getattr(stage, "account_now", None)
            if account is not None:
                try:
                    account(ctx)
                except Exception:
                    log.exception("accounting a disconnected stream failed")


# Settlements that outlive a cancelled stream: the loop holds tasks only weakly.
_SETTLING: set[asyncio.Future[None]] = set()


async def _unstoppable(work: Coroutine[Any, Any, None]) -> None:
    """Run `work` to the end even if the awaiting task is cancelled (the client went away):
    the cancellation still reaches the caller, but not the work."""
    task = asyncio.ensure_future(work)
    _SETTLING.add(task)
    task.add_done_callback(_SETTLING.discard)
    await asyncio.shield(task)


# A timeout while connecting: nothing was sent (aiohttp's, httpx's under litellm).
_CONNECT_TIMEOUTS = ("ConnectionTimeoutError", "ConnectTimeout", "ConnectTimeoutError")


def prompt_went_upstream(exc: GatewayError) -> bool:
    """Whether a failed request's prompt reached an upstream that may have processed (and
    billed) it: the wait for its answer timed out. A connection that failed or timed out
    sent nothing; an upstream's error answer is not billed by providers."""
    if not isinstance(exc, UpstreamTimeout):
        return False
    cause: BaseException | None = exc.__cause__
    for _ in range(8):  # the chain of causes is short; never loop on a cycle
        if cause is None:
            return True
        if type(cause).__name__ in _CONNECT_TIMEOUTS:
            return False
        cause = cause.__cause__ or cause.__context__
    return True


def bill_prompt_sent(ctx: RequestContext) -> None:
    """The request ended without an answer after its prompt went upstream (a timeout, the
    client hanging up): bill the prompt, counted by tiktoken, as the upstream will."""
    if ctx.deployment is not None and ctx.usage.source != "cache":
        ctx.usage = usage_of(ctx, None)


# What a closing chunk made here copies from the stream's chunks.
_CHUNK_FIELDS = ("id", "object", "created", "model", "system_fingerprint")


def closing_chunk(
    ctx: RequestContext, closing: Json | None, last: Json | None, usage: Json | None
) -> Json:
    """The stream's closing usage chunk, with what its headers could not say yet: what it
    cost and saved (as the x-thriftgate-cost-usd / -saved-usd headers of a non-stream answer
    do). The upstream's own; else one made from the last usage it reported on an answer
    chunk, or (none reported, or the stream broke) from the counts the ledger row has."""
    if closing is None:
        closing = {k: last[k] for k in _CHUNK_FIELDS if k in last} if last else {}
        closing["choices"] = []
        closing["usage"] = usage if usage else _usage_block(ctx.usage)
    return {**closing, PRICED: priced(ctx)}


def fill_missing_usage(ctx: RequestContext, body: Json | None) -> None:
    """An upstream that reports no usage: the answer carries the counts the ledger billed
    (tiktoken), as a stream's closing chunk does, instead of `"usage": null`."""
    if isinstance(body, dict) and not body.get("usage") and ctx.usage.source == "tiktoken":
        if ctx.endpoint == "embeddings":  # OpenAI's embedding usage has no completion side
            n = ctx.usage.prompt_tokens
            body["usage"] = {"prompt_tokens": n, "total_tokens": n}
        else:
            body["usage"] = _usage_block(ctx.usage)


def _usage_block(usage: Usage) -> Json:
    block: Json = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }
    if usage.cached_tokens:
        block["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    return block


def priced(ctx: RequestContext) -> dict[str, str]:
    return {"cost_usd": usd_text(ctx.cost_usd), "saved_usd": usd_text(ctx.savings.total_usd)}


async def _aclose(it: AsyncIterator[Json]) -> None:
    closer = getattr(it, "aclose", None)
    if closer is not None:
        try:
            await closer()
        except Exception:  # the upstream is gone either way
            log.debug("closing upstream stream failed", exc_info=True)


def request_id_from(headers: dict[str, str]) -> str:
    given = headers.get("x-request-id")
    if given:
        given = given.strip()
        if 0 < len(given) <= MAX_REQUEST_ID and given.isprintable():
            return given
    return "req_" + uuid.uuid4().hex


def slo_from(headers: dict[str, str], default: int | None) -> int | None:
    raw = headers.get("x-thriftgate-slo-ms")
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(float(raw))
    except (ValueError, OverflowError):  # "abc", "nan", "inf"
        raise InvalidRequest(
            "Header 'x-thriftgate-slo-ms' must be a number of milliseconds.", code="invalid_header"
        ) from None
    if not 0 < value <= MAX_SLO_MS:  # the ledger column is a 32-bit integer
        raise InvalidRequest(
            f"Header 'x-thriftgate-slo-ms' must be between 1 and {MAX_SLO_MS}.",
            code="invalid_header",
        )
    return value


__all__ = ["Pipeline", "Usage"]
