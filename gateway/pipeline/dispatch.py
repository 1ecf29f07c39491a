"""Dispatch: send the request to the routed candidates in order, falling back on failure.

Retries go to another candidate on a connect error, 429, 5xx, timeout or a deployment's own
fault (an upstream 401/403: the tenant's key was checked here, so the upstream refused the
deployment's key; a 404 or redirect: its upstream_model or api_base is wrong; a misconfigured
deployment), and each counts against that deployment's breaker.
The router re-ranks the untried ones for the SLO time that is left (the cheapest that can still make
it), within the request's overall deadline (the largest `timeout_s` among its candidates, counted
from arrival; each attempt is still cut at its own deployment's `timeout_s`, so one that hangs
leaves time for the next). A request the upstream refuses as wrong (400, 413, 422,
context_length_exceeded) goes back to the client as is, counted against no one. A 400
`unsupported_parameter` or `context_length_exceeded` is the exception: that deployment cannot serve
this request (a local engine asked for tools or images, or a prompt longer than its 2k context) but
another in the group may, so the next one is tried, still counted against no one; the first such 400
goes back only when no deployment could serve it. A stream is primed (its first chunk awaited)
inside the fallback loop, so a deployment that refuses before sending anything can still be
replaced; once a chunk is out, never retry. Every attempt is reported to the router (breaker,
latency model): TTFT when the first chunk arrives, the rest at the end; an attempt that waited for a
local engine to load its model counts for the breaker only (the load is not the deployment's
latency).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from gateway.errors import (
    GatewayError,
    InvalidRequest,
    NoHealthyDeployment,
    UpstreamError,
    UpstreamOverloaded,
    UpstreamTimeout,
)
from gateway.pipeline.context import Json, Reply, RequestContext
from gateway.pipeline.route import max_tokens_of
from gateway.pipeline.stream import carries_output
from gateway.providers.base import REQUEST_TENANT, Endpoint
from gateway.providers.registry import ProviderRegistry
from gateway.routing.catalog import Deployment
from gateway.routing.flight import Flight
from gateway.routing.policy import Candidate, fallback_reason
from gateway.routing.route_metrics import RouterMetrics
from gateway.routing.router import Router

log = logging.getLogger("thriftgate.dispatch")

MIN_ATTEMPT_S = 0.05  # less time than this left: do not start another attempt
# This deployment cannot serve the request (a capability it lacks, a context too small for the
# prompt or max_tokens); another in the group may.
UNSERVABLE = frozenset({"unsupported_parameter", "context_length_exceeded"})


# The deployment's own fault, whatever the request: the upstream refused its key (401/403), its
# account has no credit left (402: OpenRouter, DeepInfra), or its upstream_model or api_base
# names nothing there (404, or a redirect elsewhere).
DEPLOYMENT_FAULTS = frozenset({401, 402, 403, 404, 301, 302, 303, 307, 308})
# 4xx answers that are the upstream failing, not the request: it timed out (408, OpenRouter's
# "Request timed out"), its generation failed (424, TGI's GenerationError: a CUDA out of memory),
# or it asks to be tried later (425).
SERVER_SIDE_4XX = frozenset({408, 424, 425})


def retryable(exc: UpstreamError) -> bool:
    """Another deployment may succeed: connect errors and local failures (no status),
    timeouts, 429, 5xx and their 4xx kin (SERVER_SIDE_4XX), and the deployment's own faults
    (DEPLOYMENT_FAULTS)."""
    if isinstance(exc, UpstreamTimeout):
        return True
    status = exc.upstream_status
    return exc.retryable and (
        status is None
        or status in DEPLOYMENT_FAULTS
        or status in SERVER_SIDE_4XX
        or status == 429
        or status >= 500
    )


class Dispatcher:
    def __init__(
        self,
        providers: ProviderRegistry,
        router: Router | None = None,
        metrics: RouterMetrics | None = None,
    ) -> None:
        self.providers = providers
        self.router = router
        self.metrics = metrics
        # Deployments that refused the `stream_options` the gateway adds (old Azure
        # api-versions): their streams go without it, their usage counted here instead.
        self._no_stream_options: set[str] = set()

    async def dispatch(self, ctx: RequestContext) -> Reply:
        REQUEST_TENANT.set(ctx.tenant.id)  # this request's task only (a context of its own)
        plan = ctx.route_plan
        ranked: list[Candidate | None] = list(plan.ranked) if plan else [None] * len(ctx.candidates)
        deps = [c.deployment for c in ranked if c is not None] if plan else list(ctx.candidates)
        if not deps:
            raise NoHealthyDeployment("No deployment is available for this model.")
        # The whole request may take as long as its most patient candidate allows; each attempt
        # is still cut at its own timeout_s, so a hung first choice leaves time for the others
        # (with the first one's timeout as the deadline, a timeout could never fall back).
        deadline = (
            time.perf_counter() + max(d.config.timeout_s for d in deps) - ctx.elapsed_ms() / 1000.0
        )
        last: GatewayError | None = None
        unserved: InvalidRequest | None = None  # a deployment that cannot serve this request
        order = list(zip(deps, ranked, strict=True))
        tried: list[str] = []
        reason: str | None = None  # why the next attempt is a fallback, once it starts
        while order:
            dep, cand = order.pop(0)
            tried.append(dep.name)
            remaining_s = deadline - time.perf_counter()
            if remaining_s < MIN_ATTEMPT_S:
                # the last failure (naming its deployment) says more than a generic timeout
                last = last or UpstreamTimeout(
                    "The request ran out of time before a deployment answered."
                )
                break
            flight = self._start(ctx, cand)
            if cand is not None and self.router is not None and flight is None:
                continue  # its breaker opened meanwhile, or its half-open probe is taken
            if reason is not None:
                set_reason(ctx, reason)
                if cand is not None:  # the prediction of the one that now serves
                    ctx.predicted_latency_ms = round(cand.latency.expected_ms(ctx.stream), 1)
                    predicted = f"{ctx.predicted_latency_ms:g}"
                    ctx.extra_headers["x-thriftgate-predicted-latency-ms"] = predicted
            ctx.deployment = dep
            ctx.attempts.append(dep.name)
            try:
                timeout_s = min(dep.config.timeout_s, remaining_s)
                return await self._attempt(ctx, dep, flight, timeout_s)
            except UpstreamError as exc:
                last = exc
                status = exc.upstream_status or exc.status_code
                log.info("deployment %s failed (%s): %s", dep.name, status, exc.message)
                again = retryable(exc)
                # a full queue is a busy engine, not a broken one: no breaker count
                busy = isinstance(exc, UpstreamOverloaded)
                self._fail(flight, dep.name, status, counts=again and not busy)
                if not again:
                    raise
                if plan is not None and self.router is not None:
                    # re-rank the rest for the time left: the cheapest that can still make it
                    rest = self.router.replan(plan, tried, ctx.elapsed_ms())
                    order = [(c.deployment, c) for c in rest]
                reason = fallback_reason(exc.upstream_status or exc.status_code)
            except InvalidRequest as exc:
                if exc.code not in UNSERVABLE:
                    self._abandon(flight)
                    raise
                log.info("deployment %s cannot serve this request: %s", dep.name, exc.message)
                self._fail(flight, dep.name, exc.status_code, counts=False)
                # the last refusal: the deployment the error's headers name, and in a group
                # tried cheapest first the larger model, whose context limit is the one to meet
                unserved = exc
                reason = f"fallback-after-{exc.code}"  # fallback-after-context_length_exceeded
            except BaseException:  # cancelled, or a bad request: no verdict on the upstream
                self._abandon(flight)
                raise
        # A deployment that could serve it but failed says more (a retry may work) than a 400.
        if last is not None:
            raise last
        if unserved is not None:
            raise unserved
        raise NoHealthyDeployment("No deployment is available for this model.")

    async def _attempt(
        self, ctx: RequestContext, dep_: Deployment, flight: Flight | None, timeout_s: float
    ) -> Reply:
        provider = self.providers.for_deployment(dep_)
        if flight is not None and _loading(provider, dep_):
            # it will wait for a local engine's one-time model load: seconds that say nothing
            # about its speed once loaded; learned, they would send SLO traffic elsewhere
            flight.learn = False
        if ctx.endpoint == "embeddings":
            body = await provider.embed(ctx.body, dep_, timeout_s=timeout_s)
            self._succeed(flight, body)
            return Reply(body=body)
        path: Endpoint = "chat/completions" if ctx.endpoint == "chat" else "completions"
        if not ctx.stream:
            body = await provider.complete(ctx.body, dep_, endpoint=path, timeout_s=timeout_s)
            self._succeed(flight, body)
            return Reply(body=body)
        ours = _gateway_stream_options(ctx)
        body = ctx.body
        if ours and dep_.name in self._no_stream_options:
            body = _without_stream_options(body)
        chunks = provider.stream(body, dep_, endpoint=path, timeout_s=timeout_s)
        try:
            first = await _prime(chunks, dep_)
        except InvalidRequest as exc:
            if not (ours and body is ctx.body and _names_stream_options(exc)):
                raise
            # The upstream refuses the parameter the gateway added, not anything the client
            # sent: once more without it, and remember (in-process) for this deployment.
            log.info("deployment %s refuses stream_options; streaming without it", dep_.name)
            self._no_stream_options.add(dep_.name)
            body = _without_stream_options(body)
            chunks = provider.stream(body, dep_, endpoint=path, timeout_s=timeout_s)
            first = await _prime(chunks, dep_)
        # The first chunk commits the request to this deployment (no retry after it), but the
        # time to first token is when output arrives: it may open with a role-only chunk.
        return Reply(chunks=self._follow(flight, first, chunks))

    def _first_token(self, flight: Flight | None) -> None:
        if flight is not None and self.router is not None:
            self.router.first_token(flight)
            self._observed(flight, "ttft", flight.first_token_ms, flight.predicted.ttft_ms)

    async def _follow(
        self, flight: Flight | None, first: Json, rest: AsyncIterator[Json]
    ) -> AsyncIterator[Json]:
        """Pass the stream through; at its end tell the router how it went (no retry now)."""
        usage: Json | None = None
        finish: str | None = None
        ok = False
        waiting = True  # for the first chunk that carries output
        try:
            if carries_output(first):
                waiting = False
                self._first_token(flight)
            yield first
            usage, finish = _usage_and_finish(first, usage, finish)
            async for chunk in rest:
                if waiting and carries_output(chunk):
                    waiting = False
                    self._first_token(flight)
                usage, finish = _usage_and_finish(chunk, usage, finish)
                yield chunk
            ok = True
        except UpstreamError as exc:
            if flight is not None:
                self._fail(flight, flight.name, exc.upstream_status or exc.status_code, counts=True)
            raise
        finally:
            if ok:
                self._succeed(flight, {"usage": usage, "choices": [{"finish_reason": finish}]})
            else:
                self._abandon(flight)  # no-op when already failed
            closer = getattr(rest, "aclose", None)
            if closer is not None:
                await closer()

    # -- router feedback -------------------------------------------------------------------

    def _start(self, ctx: RequestContext, cand: Candidate | None) -> Flight | None:
        if self.router is None or cand is None:
            return None
        return self.router.start(
            cand,
            model=ctx.model,
            prompt_tokens=ctx.prompt_tokens_estimate,
            stream=ctx.stream,
            max_tokens=max_tokens_of(ctx.body),
        )

    def _succeed(self, flight: Flight | None, body: Json) -> None:
        if flight is None or self.router is None:
            return
        usage, finish = _usage_and_finish(body, None, None)
        tokens = usage.get("completion_tokens") if usage else None
        if not isinstance(tokens, int):
            # no usage block: still a success for the breaker, nothing to learn about speed
            self.router.abandon(flight)
            self.router.breakers[flight.name].record_success()
            return
        self.router.succeed(flight, completion_tokens=tokens, count_length=finish != "length")
        elapsed_ms = (self.router.clock() - flight.started) * 1000.0
        self._observed(flight, "total", elapsed_ms, flight.predicted.total_ms)

    def _fail(self, flight: Flight | None, name: str, status: int, *, counts: bool) -> None:
        if self.metrics is not None:
            self.metrics.attempts.labels(name, str(status)).inc()
        if flight is None or self.router is None:
            return
        if counts:
            self.router.fail(flight)
        else:
            self.router.abandon(flight)

    def _abandon(self, flight: Flight | None) -> None:
        if flight is not None and self.router is not None:
            self.router.abandon(flight)

    def _observed(
        self, flight: Flight, phase: str, observed_ms: float | None, predicted_ms: float
    ) -> None:
        if self.metrics is not None and observed_ms is not None:
            self.metrics.observed.labels(flight.name, phase).observe(observed_ms / 1000.0)
            self.metrics.predicted.labels(flight.name, phase).observe(predicted_ms / 1000.0)


def _loading(provider: object, dep_: Deployment) -> bool:
    """Whether the provider has yet to load this deployment (a local engine's model)."""
    loading = getattr(provider, "loading", None)
    return bool(loading(dep_)) if callable(loading) else False


async def _prime(chunks: AsyncIterator[Json], dep_: Deployment) -> Json:
    """The stream's first chunk: where an upstream that refuses the request says so."""
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        raise UpstreamError(f"Deployment {dep_.name!r} sent an empty stream.") from None


def _gateway_stream_options(ctx: RequestContext) -> bool:
    """Whether the request's stream_options is only `include_usage: true`: dropping it changes
    nothing the client sees, asked or not, since the stream always ends with the gateway's own
    priced usage chunk when the client asked (tiktoken's counts if the upstream sends none)."""
    return ctx.body.get("stream_options") == {"include_usage": True}


def _without_stream_options(body: Json) -> Json:
    return {k: v for k, v in body.items() if k != "stream_options"}


def _names_stream_options(exc: InvalidRequest) -> bool:
    """A 400 about stream_options ("Unknown parameter: 'stream_options'", Azure's
    "Unrecognized request argument supplied: stream_options")."""
    return exc.status_code == 400 and (
        exc.param == "stream_options" or "stream_options" in exc.message
    )


def set_reason(ctx: RequestContext, reason: str) -> None:
    ctx.route_reason = reason
    ctx.extra_headers["x-thriftgate-route-reason"] = reason


def _usage_and_finish(
    chunk: Json, usage: Json | None, finish: str | None
) -> tuple[Json | None, str | None]:
    found = chunk.get("usage")
    if isinstance(found, dict):
        usage = found
    for choice in chunk.get("choices") or ():
        if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
            finish = choice["finish_reason"]
    return usage, finish
