"""Dispatch: send the request to the routed candidates in order, falling back on failure.

A stream is primed (its first chunk awaited) inside the fallback loop, so a deployment that
refuses before sending anything can still be replaced; once a chunk is out, never retry.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from gateway.errors import GatewayError, NoHealthyDeployment, UpstreamError
from gateway.pipeline.context import Json, Reply, RequestContext
from gateway.providers.registry import ProviderRegistry

log = logging.getLogger("thriftgate.dispatch")


class Dispatcher:
    def __init__(self, providers: ProviderRegistry) -> None:
        self.providers = providers

    async def dispatch(self, ctx: RequestContext) -> Reply:
        last: GatewayError | None = None
        for dep in ctx.candidates:
            provider = self.providers.for_deployment(dep)
            ctx.deployment = dep
            ctx.attempts.append(dep.name)
            timeout_s = dep.config.timeout_s
            try:
                if ctx.endpoint == "embeddings":
                    return Reply(body=await provider.embed(ctx.body, dep, timeout_s=timeout_s))
                path = "chat/completions" if ctx.endpoint == "chat" else "completions"
                if not ctx.stream:
                    body = await provider.complete(
                        ctx.body, dep, endpoint=path, timeout_s=timeout_s
                    )
                    return Reply(body=body)
                chunks = provider.stream(ctx.body, dep, endpoint=path, timeout_s=timeout_s)
                try:
                    first = await anext(chunks)
                except StopAsyncIteration:
                    raise UpstreamError(f"Deployment {dep.name!r} sent an empty stream.") from None
                ctx.ttft_ms = ctx.elapsed_ms()
                return Reply(chunks=_prepend(first, chunks))
            except UpstreamError as exc:
                last = exc
                log.info("deployment %s failed: %s", dep.name, exc.message)
                if not exc.retryable:
                    raise
                if len(ctx.attempts) < len(ctx.candidates):
                    ctx.route_reason = f"fallback-after-{exc.upstream_status or exc.status_code}"
        if last is not None:
            raise last
        raise NoHealthyDeployment("No deployment is available for this model.")


async def _prepend(first: Json, rest: AsyncIterator[Json]) -> AsyncIterator[Json]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        closer = getattr(rest, "aclose", None)
        if closer is not None:
            await closer()
