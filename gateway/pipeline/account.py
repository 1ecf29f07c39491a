"""Account stage: usage, cost, counterfactual cost and savings -> one ledger row + metrics.

Usage comes from the upstream's `usage` block; tiktoken counts only when there is none.
counterfactual = what the group's default deployment would have charged for the original
(uncompressed) prompt with no cache. savings split that difference by technique:
  compression = baseline price x tokens compression removed
  routing     = baseline cost - chosen deployment's cost, for the tokens actually sent
  cache       = the whole counterfactual on a hit (the hit itself costs nothing)
A request that failed (status >= 400) claims none: its counterfactual is what it was billed.
Energy: a local engine (in-process or over HTTP) reports the GPU energy it charged to the
request as `usage.energy_joules` where it can measure it; that goes into the ledger row. Rows
of cloud deployments, cache hits and unmeasured engines keep it null.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway.accounting.ledger import LedgerWriter
from gateway.accounting.pricing import Price, ledger_usd, web_search_asked
from gateway.accounting.tokenizer import count_prompt, count_text
from gateway.metrics import GatewayMetrics
from gateway.pipeline.context import Reply, RequestContext, Usage
from gateway.routing.catalog import Catalog, Deployment

ZERO = Decimal(0)
CACHE_HITS = ("hit-exact", "hit-semantic")


class AccountStage:
    def __init__(
        self,
        catalog: Catalog,
        ledger: LedgerWriter,
        metrics: GatewayMetrics,
        *,
        effective_price: Callable[[str, int], Price | None] | None = None,
    ) -> None:
        self.catalog = catalog
        self.ledger = ledger
        self.metrics = metrics
        # Hardware-priced (local) deployments: $/hour over throughput at the current load,
        # from the router; their configured token price is usually 0 and would hide the cost.
        self.effective_price = effective_price

    async def before(self, ctx: RequestContext) -> Reply | None:
        return None

    async def after(self, ctx: RequestContext, reply: Reply) -> None:
        if ctx.status_code < 400:
            ctx.energy_joules = energy_of(ctx, reply.body)
        self.account_now(ctx)

    def account_now(self, ctx: RequestContext) -> None:
        """Price the request and spool its ledger row (synchronous: safe during cancellation)."""
        ctx.latency_ms = ctx.elapsed_ms()
        self._price(ctx)
        if ctx.slo_met is None and ctx.slo_ms is not None and ctx.status_code < 400:
            observed = ctx.ttft_ms if ctx.stream and ctx.ttft_ms is not None else ctx.latency_ms
            ctx.slo_met = observed <= ctx.slo_ms
        self.ledger.submit(ledger_row(ctx))
        self._observe(ctx)

    def _price(self, ctx: RequestContext) -> None:
        self._price_served(ctx)
        if ctx.status_code >= 400:
            # A failed request claims no saving, whatever it was billed (a stream cut after its
            # first byte, a timeout after the prompt went up, a client that hung up): the
            # retry that follows claims the whole counterfactual, so a saving booked here too
            # would count the same work twice. It cost what it cost, against nothing.
            ctx.savings.cache_usd = ctx.savings.compression_usd = ctx.savings.routing_usd = ZERO
            ctx.counterfactual_cost_usd = ctx.cost_usd

    def _price_served(self, ctx: RequestContext) -> None:
        u = ctx.usage
        baseline = baseline_of(ctx, self.catalog)
        if ctx.cache_status in CACHE_HITS:
            ctx.cost_usd = ZERO
            if baseline is not None:
                # at the price the miss was accounted at: a hardware-priced baseline's token
                # price is configured as 0, and the cache stage cannot see the router's price
                price = self._price_of(baseline, u.completion_tokens, u.service_tier)
                ctx.counterfactual_cost_usd = hit_counterfactual(ctx, price)
            ctx.counterfactual_cost_usd = ledger_usd(ctx.counterfactual_cost_usd)
            ctx.savings.cache_usd = ctx.counterfactual_cost_usd
            ctx.savings.compression_usd = ZERO
            ctx.savings.routing_usd = ZERO
            return
        dep = ctx.deployment
        if dep is None or (u.prompt_tokens == 0 and u.completion_tokens == 0):
            # nothing was sent (or nothing counted): no cost, so no saving either, whatever the
            # router predicted before the attempt failed
            ctx.savings.compression_usd = ZERO
            ctx.savings.routing_usd = ZERO
            return
        # Each figure rounded as the ledger stores it; routing and the counterfactual derive
        # from the rounded ones, so cost + savings = counterfactual holds to the last place.
        # A service tier's price (OpenAI's flex: half) at the deployment that served it, and
        # the same tier at the baseline where it has one: asking for flex is not a saving of
        # routing.
        ctx.cost_usd = ledger_usd(
            billed(self._price_of(dep, u.completion_tokens, u.service_tier), u)
        )
        base_price = self._price_of(baseline or dep, u.completion_tokens, u.service_tier)
        sent = billed(base_price, u)
        sent_at_baseline = ledger_usd(sent)
        # the prompt as the client wrote it, priced whole: compression that brought a prompt
        # under a long-context threshold also saved the dearer price of every other token
        whole = billed(base_price, replace(u, prompt_tokens=u.prompt_tokens + tokens_removed(ctx)))
        ctx.savings.compression_usd = ledger_usd(whole - sent)
        ctx.savings.routing_usd = sent_at_baseline - ctx.cost_usd
        ctx.counterfactual_cost_usd = sent_at_baseline + ctx.savings.compression_usd

    def _price_of(self, dep: Deployment, completion_tokens: int, tier: str | None = None) -> Price:
        if dep.config.hardware_usd_per_hour is not None and self.effective_price is not None:
            price = self.effective_price(dep.name, max(completion_tokens, 1))
            if price is not None:
                return price
        return dep.price.for_tier(tier)

    def _observe(self, ctx: RequestContext) -> None:
        m = self.metrics
        dep = ctx.deployment.name if ctx.deployment else "none"
        tenant = ctx.tenant.id
        m.requests.labels(tenant, ctx.model, dep, str(ctx.status_code)).inc()
        if ctx.latency_ms is not None:
            m.latency.labels(ctx.model, dep).observe(ctx.latency_ms / 1000.0)
        if ctx.ttft_ms is not None:
            m.ttft.labels(ctx.model, dep).observe(ctx.ttft_ms / 1000.0)
        if ctx.usage.prompt_tokens:
            m.tokens.labels(tenant, ctx.model, dep, "prompt").inc(ctx.usage.prompt_tokens)
        if ctx.usage.completion_tokens:
            m.tokens.labels(tenant, ctx.model, dep, "completion").inc(ctx.usage.completion_tokens)
        if ctx.cost_usd:
            m.cost.labels(tenant, ctx.model, dep).inc(float(ctx.cost_usd))
        for technique, amount in (
            ("cache", ctx.savings.cache_usd),
            ("compression", ctx.savings.compression_usd),
            ("routing", ctx.savings.routing_usd),
        ):
            if amount > 0:
                m.saved.labels(tenant, technique).inc(float(amount))
            elif amount < 0:  # the ledger's sum is saved - overspent
                m.overspent.labels(tenant, technique).inc(float(-amount))
        m.cache.labels(tenant, ctx.cache_status).inc()


def baseline_of(ctx: RequestContext, catalog: Catalog) -> Deployment | None:
    """The deployment a request's counterfactual is priced at: the router's baseline (for
    thriftgate/auto, the first listed model's default), else the model's default. One
    function for misses and cache hits, so a hit claims what its miss counted."""
    plan = ctx.route_plan
    if plan is not None and plan.default is not None:
        return plan.default
    dep = catalog.default_for(ctx.model)
    if dep is None and ctx.candidates:  # thriftgate/auto before routing (a cache hit)
        dep = catalog.default_for(ctx.candidates[0].model) or ctx.candidates[0]
    return dep or ctx.deployment


def tokens_removed(ctx: RequestContext) -> int:
    """Prompt tokens compression cut, in the upstream's tokens where it reported its count:
    tiktoken counted both prompts, and the upstream's tokenizer can count the sent one very
    differently (848 for tiktoken's 1,156), so the cut is scaled by the same ratio. Not when
    the prompt holds parts tiktoken cannot count (images, audio, files): the upstream's count
    has them, so the ratio says nothing of the tokenizer, and tiktoken's cut is claimed."""
    removed = ctx.prompt_tokens_removed
    sent = ctx.prompt_tokens_compressed
    u = ctx.usage
    if not removed or not sent or u.source != "upstream" or not u.prompt_tokens:
        return removed
    if _has_media(ctx.body.get("messages")):
        return removed
    return round(removed * u.prompt_tokens / sent)


def _has_media(messages: Any) -> bool:
    """Whether chat messages hold a content part that is not text (an image, audio, a file)."""
    for msg in messages if isinstance(messages, list) else ():
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list) and any(
            isinstance(part, dict) and part.get("type") not in ("text", None) for part in content
        ):
            return True
    return False


def billed(price: Price, u: Usage) -> Decimal:
    """What `u` costs at `price`: cached, written (5-minute and 1-hour) and audio tokens each
    at their own price, its reasoning and citation tokens too, and its web searches."""
    return price.cost_usd(
        u.prompt_tokens,
        u.completion_tokens,
        u.cached_tokens,
        u.cache_write_tokens,
        u.cache_write_1h_tokens,
        audio_prompt_tokens=u.audio_prompt_tokens,
        audio_completion_tokens=u.audio_completion_tokens,
        web_searches=u.web_searches,
        web_search_size=u.web_search_size,
        reasoning_tokens=u.reasoning_tokens,
        citation_tokens=u.citation_tokens,
        image_prompt_tokens=u.image_prompt_tokens,
        image_completion_tokens=u.image_completion_tokens,
    )


def hit_counterfactual(ctx: RequestContext, price: Price) -> Decimal:
    """What a cache hit avoided at `price`: the prompt its miss sent plus what compression cut
    from it (as input), i.e. the prompt as the client wrote it, and the stored answer."""
    u = ctx.usage
    return price.cost_usd(
        u.prompt_tokens + ctx.hit_tokens_removed, u.completion_tokens, u.cached_tokens,
        web_searches=u.web_searches, web_search_size=u.web_search_size,
        reasoning_tokens=u.reasoning_tokens, citation_tokens=u.citation_tokens,
        image_prompt_tokens=u.image_prompt_tokens,
        image_completion_tokens=u.image_completion_tokens,
    )  # fmt: skip


def priced_extras(ctx: RequestContext, body: Any) -> dict[str, Any]:
    """What an answer's usage says it was billed for beyond its token counts (a cache hit's
    stored answer too): web searches, reasoning, citation and image tokens priced apart."""
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return {}
    details = usage.get("prompt_tokens_details")
    return {
        "web_searches": web_searches(body, usage, details if isinstance(details, dict) else {}),
        "web_search_size": _search_size(ctx, usage),
        "reasoning_tokens": _reasoning(usage),
        "citation_tokens": _count(usage.get("citation_tokens")) or 0,
        "image_prompt_tokens": _image_tokens(details),
        "image_completion_tokens": _image_tokens(usage.get("completion_tokens_details")),
    }


def _image_tokens(details: Any) -> int:
    """Image tokens in a usage's details (litellm's for Gemini, OpenAI's image models')."""
    return (_count(details.get("image_tokens")) or 0) if isinstance(details, dict) else 0


# More tokens than any model takes in one request: an upstream reporting this is broken, and
# the ledger's INTEGER columns could not hold its numbers anyway.
MAX_TOKENS_PER_REQUEST = 100_000_000


def _count(value: Any) -> int | None:
    """A token count as reported: an int, or a whole float (`1000.0`, which some providers
    and JSON round trips produce); anything else is not a count."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    ok = isinstance(value, int) and not isinstance(value, bool)
    return value if ok and 0 <= value < MAX_TOKENS_PER_REQUEST else None


# A kilowatt for eleven days: no single request uses more; beyond it the figure is broken.
MAX_JOULES_PER_REQUEST = 1e9


def is_local_engine(dep: Deployment) -> bool:
    """Our engine: in-process (`provider: local`) or over HTTP (priced by hardware $/hour)."""
    return dep.provider == "local" or dep.config.hardware_usd_per_hour is not None


def energy_of(ctx: RequestContext, body: dict[str, Any] | None) -> float | None:
    """The local engine's `usage.energy_joules` for this request; None when not measured.

    Read only for local deployments that served the request, so a cloud answer costs one
    attribute check and an upstream's own fields are never taken for ours."""
    dep = ctx.deployment
    if dep is None or ctx.cache_status in CACHE_HITS or not is_local_engine(dep):
        return None
    usage = body.get("usage") if isinstance(body, dict) else None
    value = usage.get("energy_joules") if isinstance(usage, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    joules = float(value)
    return joules if math.isfinite(joules) and 0 <= joules < MAX_JOULES_PER_REQUEST else None


def service_tier(ctx: RequestContext, body: dict[str, Any] | None) -> str | None:
    """The tier that served the request, as the upstream says (OpenAI answers the tier used,
    e.g. "default" for "auto"), else the one the client asked for."""
    served = body.get("service_tier") if isinstance(body, dict) else None
    if isinstance(served, str):
        return served
    return asked_tier(ctx)


def asked_tier(ctx: RequestContext) -> str | None:
    """The service tier the client asked for, if any (a cache hit avoided a call at it)."""
    asked = ctx.body.get("service_tier")
    return asked if isinstance(asked, str) else None


def usage_of(ctx: RequestContext, body: dict[str, Any] | None) -> Usage:
    tier = service_tier(ctx, body)
    usage = body.get("usage") if isinstance(body, dict) else None
    prompt_tokens = _count(usage.get("prompt_tokens")) if isinstance(usage, dict) else None
    if isinstance(usage, dict) and prompt_tokens is not None:
        details = usage.get("prompt_tokens_details") or {}
        if not isinstance(details, dict):
            details = {}
        cached = min(cache_hits(usage, details), prompt_tokens)
        completion = _count(usage.get("completion_tokens"))
        total = _count(usage.get("total_tokens"))
        if completion is None and "completion_tokens" not in usage and total is not None:
            completion = max(total - prompt_tokens, 0)  # left out, but the total says it
        if completion is None:  # missing or nonsense: count what was generated
            model = ctx.deployment.served_model if ctx.deployment else ctx.model
            completion = count_text(completion_text(body), model)
        else:
            completion += reasoning_outside(usage, prompt_tokens, completion, total)
        written = min(_cache_writes(usage, details), prompt_tokens - cached)
        return Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion,
            cached_tokens=cached,
            cache_write_tokens=written,
            cache_write_1h_tokens=min(_hour_cache_writes(usage, details), written),
            audio_prompt_tokens=_count(details.get("audio_tokens")) or 0,
            audio_completion_tokens=_audio_answer(usage),
            **priced_extras(ctx, body),
            source="upstream",
            service_tier=tier,
        )
    model = ctx.deployment.served_model if ctx.deployment else ctx.model
    prompt = (
        count_prompt(ctx.body, model) if ctx.endpoint != "embeddings" else _embed_tokens(ctx, model)
    )
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=count_text(completion_text(body), model),
        source="tiktoken",
        service_tier=tier,
    )


def cache_hits(usage: dict[str, Any], details: dict[str, Any]) -> int:
    """Prompt tokens read from the provider's prompt cache: OpenAI's details, else DeepSeek's
    own API, which reports them at the top level only."""
    hits = details.get("cached_tokens")
    if hits is None:
        hits = usage.get("prompt_cache_hit_tokens")
    return _count(hits) or 0


def reasoning_outside(
    usage: dict[str, Any], prompt: int, completion: int, total: int | None
) -> int:
    """Reasoning tokens an upstream counted outside `completion_tokens` and bills as output:
    xAI's total is prompt + completion + reasoning, where OpenAI's completion includes the
    reasoning (its total is prompt + completion). Only when the total says so: never twice."""
    details = usage.get("completion_tokens_details")
    reasoning = _count(details.get("reasoning_tokens")) if isinstance(details, dict) else None
    if reasoning and total is not None and total == prompt + completion + reasoning:
        return reasoning
    return 0


def _cache_writes(usage: dict[str, Any], details: dict[str, Any]) -> int:
    """Prompt tokens written to the provider's prompt cache, which `prompt_tokens` includes:
    litellm reports Anthropic's as `cache_creation_input_tokens` (and in the details as
    `cache_creation_tokens`); OpenRouter-style upstreams as details' `cache_write_tokens`."""
    for value in (
        usage.get("cache_creation_input_tokens"),
        details.get("cache_creation_tokens"),
        details.get("cache_write_tokens"),
    ):
        count = _count(value)
        if count:
            return count
    return 0


def web_searches(body: Any, usage: dict[str, Any], details: dict[str, Any]) -> int:
    """Web searches the upstream bills apiece, as each reports them: Anthropic's
    `server_tool_use.web_search_requests`, Gemini's (through litellm) details'
    `web_search_requests`, xAI's `server_side_tool_usage_details.web_search_calls`, Perplexity's
    `num_search_queries` (and its request fee, which each answer with a `search_context_size`
    pays once); else an answer citing the web (`url_citation`: OpenAI's search models) one."""
    server = usage.get("server_tool_use")
    xai = usage.get("server_side_tool_usage_details")
    for count in (
        server.get("web_search_requests") if isinstance(server, dict) else None,
        details.get("web_search_requests"),
        xai.get("web_search_calls") if isinstance(xai, dict) else None,
        usage.get("num_search_queries"),
    ):
        searches = _count(count)
        if searches:
            return searches
    if isinstance(usage.get("search_context_size"), str):
        return 1
    choices = body.get("choices") if isinstance(body, dict) else None
    for choice in choices if isinstance(choices, list) else ():
        msg = choice.get("message") if isinstance(choice, dict) else None
        notes = msg.get("annotations") if isinstance(msg, dict) else None
        if isinstance(notes, list) and any(
            isinstance(n, dict) and n.get("type") == "url_citation" for n in notes
        ):
            return 1
    return 0


def _search_size(ctx: RequestContext, usage: dict[str, Any]) -> str | None:
    """The search context size a search was billed at: the upstream's word (Perplexity),
    else the one asked for."""
    said = usage.get("search_context_size")
    return said if isinstance(said, str) else web_search_asked(ctx.body)[1]


def _reasoning(usage: dict[str, Any]) -> int:
    """Reasoning tokens of the completion: OpenAI's details, Perplexity's top-level count."""
    details = usage.get("completion_tokens_details")
    found = _count(details.get("reasoning_tokens")) if isinstance(details, dict) else None
    return found or _count(usage.get("reasoning_tokens")) or 0


def _audio_answer(usage: dict[str, Any]) -> int:
    """Audio tokens of the answer (part of `completion_tokens`), from OpenAI's details."""
    details = usage.get("completion_tokens_details")
    return (_count(details.get("audio_tokens")) or 0) if isinstance(details, dict) else 0


def _hour_cache_writes(usage: dict[str, Any], details: dict[str, Any]) -> int:
    """Of the written tokens, those written to the 1-hour cache (Anthropic: 2x input, the
    5-minute one 1.25x): litellm's details' `cache_creation_token_details`, Anthropic's own
    `cache_creation` block where an upstream passes its usage on."""
    for block in (details.get("cache_creation_token_details"), usage.get("cache_creation")):
        if isinstance(block, dict):
            count = _count(block.get("ephemeral_1h_input_tokens"))
            if count:
                return count
    return 0


def _embed_tokens(ctx: RequestContext, model: str) -> int:
    inp = ctx.body.get("input")
    if isinstance(inp, str):
        return count_text(inp, model)
    if isinstance(inp, list):
        return sum(count_text(x, model) for x in inp if isinstance(x, str))
    return 0


def completion_text(body: dict[str, Any] | None) -> str:
    if not isinstance(body, dict):
        return ""
    parts: list[str] = []
    for choice in body.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        msg = choice.get("message")
        if isinstance(msg, dict):
            if isinstance(msg.get("content"), str):
                parts.append(msg["content"])
            # reasoning is output the upstream bills (DeepSeek, vLLM and llama.cpp's
            # reasoning_content; Ollama's and OpenRouter's reasoning)
            for field in ("reasoning_content", "reasoning"):
                if isinstance(msg.get(field), str):
                    parts.append(msg[field])
            for call in msg.get("tool_calls") or ():
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict):
                    parts.append(str(fn.get("name") or "") + str(fn.get("arguments") or ""))
        elif isinstance(choice.get("text"), str):
            parts.append(choice["text"])
    return "".join(parts)


def ledger_row(ctx: RequestContext) -> dict[str, Any]:
    dep = ctx.deployment
    return {
        "id": ctx.ledger_id,
        "request_id": ctx.request_id,
        "tenant_id": ctx.tenant.id,
        "key_id": ctx.tenant.key_id,
        "endpoint": ctx.api or ctx.endpoint,
        "model": ctx.model,
        "deployment": dep.name if dep else None,
        "provider": dep.provider if dep else None,
        "status_code": ctx.status_code,
        # the column holds 64 characters; an upstream's own code can be longer, and a row
        # the database refuses would lose the request (and hold its reservation)
        "error_code": ctx.error_code[:64] if ctx.error_code else ctx.error_code,
        "stream": ctx.stream,
        "prompt_tokens": ctx.usage.prompt_tokens,
        "completion_tokens": ctx.usage.completion_tokens,
        "cached_tokens": ctx.usage.cached_tokens,
        "usage_source": ctx.usage.source,
        "cost_usd": str(ctx.cost_usd),
        "counterfactual_cost_usd": str(ctx.counterfactual_cost_usd),
        "saved_cache_usd": str(ctx.savings.cache_usd),
        "saved_compression_usd": str(ctx.savings.compression_usd),
        "saved_routing_usd": str(ctx.savings.routing_usd),
        "latency_ms": round(ctx.latency_ms or 0.0, 3),
        "ttft_ms": round(ctx.ttft_ms, 3) if ctx.ttft_ms is not None else None,
        "slo_ms": ctx.slo_ms,
        "slo_met": ctx.slo_met,
        "cache_status": ctx.cache_status,
        "route_reason": ctx.route_reason,
        "compression_method": ctx.compression_method,
        "prompt_tokens_original": ctx.prompt_tokens_original,
        "energy_joules": ctx.energy_joules,
        "created_at": datetime.now(UTC).isoformat(),
        "_reserved_usd": str(ctx.reserved_usd),
        "_period_start": ctx.period_start.isoformat() if ctx.period_start else None,
        "_reserve_epoch": ctx.reserve_epoch,
    }
