"""Cache stage: answer from the cache when it safely can; store successful answers.

`before` tries the exact key, then the semantic index (same tenant and scope, verified; both
keys carry the compression the request will get, see `_compression`); a hit ends the request
with the cached answer (JSON, or a replayed SSE stream) at zero cost and records the cost it
avoided. `after` stores a successful, cacheable answer. Headers:
`x-thriftgate-cache` (rendered from `ctx.cache_status`) and, on a semantic hit,
`x-thriftgate-cache-similarity`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson

from gateway.cache.index import Vector
from gateway.cache.keys import CacheKeys, request_keys, response_cacheable, safety
from gateway.cache.policy import CachePolicy, directives
from gateway.cache.replay import chunks_of, fresh_body, replay
from gateway.cache.response_cache import ResponseCache
from gateway.cache.store import StoredEntry
from gateway.compression import resolve_options
from gateway.db.models import new_id, utcnow
from gateway.pipeline.account import (
    asked_tier,
    baseline_of,
    hit_counterfactual,
    priced_extras,
    tokens_removed,
)
from gateway.pipeline.context import Reply, RequestContext, Usage
from gateway.routing.catalog import Catalog

log = logging.getLogger("thriftgate.cache")
MAX_PENDING = 10_000
SIMILARITY_HEADER = "x-thriftgate-cache-similarity"


@dataclass(slots=True)
class _Pending:
    keys: CacheKeys
    policy: CachePolicy
    ttl_s: int
    vector: Vector | None  # the query's embedding from the lookup, if one ran


class CacheStage:
    def __init__(
        self,
        cache: ResponseCache,
        catalog: Catalog,
        *,
        enabled_default: bool = True,
        compress_default: str = "off",
    ) -> None:
        self.cache = cache
        self.catalog = catalog
        self.enabled_default = enabled_default
        self.compress_default = compress_default  # the compress stage's default mode
        # ledger id -> what `after` needs to store a miss; bounded because a client that
        # disconnects mid-stream never reaches `after`.
        self._pending: OrderedDict[str, _Pending] = OrderedDict()

    async def before(self, ctx: RequestContext) -> Reply | None:
        ctx.cache_status = "bypass"
        # A malformed cache header is the same 400 whether or not this request could be cached
        # (it was a 200 for tenants with the cache off and on /v1/embeddings).
        wanted = directives(ctx.headers)
        if ctx.endpoint == "embeddings":
            return None
        policy = CachePolicy.from_flags(ctx.tenant.flags, enabled_default=self.enabled_default)
        if not policy.enabled:
            return None
        verdict = safety(
            ctx.body,
            max_temperature=policy.max_temperature,
            unset_temperature_ok=policy.unset_temperature_ok,
            tool_calls_ok=policy.tool_calls_ok,
            multi_choice_ok=policy.multi_choice_ok,
        )
        if not verdict.cacheable or (not wanted.store and not wanted.lookup):
            return None
        keys = request_keys(
            ctx.tenant.id, ctx.endpoint, ctx.model, ctx.body, variant=self._compression(ctx)
        )
        self.cache.note_limit(ctx.tenant.id, policy.max_entries)
        vector = None
        if wanted.lookup:
            ctx.cache_status = "miss"
            entry = self.cache.exact(keys.exact)
            if entry is not None:
                return self._hit(ctx, entry, "hit-exact", None)
            if (
                policy.semantic
                and keys.query
                and self.cache.semantic_enabled
                and self.cache.scope_may_match(keys.scope)
            ):
                try:
                    found = await self.cache.semantic(keys.scope, keys.query, policy)
                except Exception:  # the cache is an optimisation: a broken lookup is a miss
                    log.exception("semantic cache lookup failed")
                else:
                    if found.entry is not None and found.similarity is not None:
                        return self._hit(ctx, found.entry, "hit-semantic", found.similarity)
                    vector = found.vector
        if wanted.store:
            self._remember(
                ctx.ledger_id, _Pending(keys, policy, wanted.ttl_s or policy.ttl_s, vector)
            )
        return None

    async def after(self, ctx: RequestContext, reply: Reply) -> None:
        pending = self._pending.pop(ctx.ledger_id, None)
        if pending is None or ctx.cache_status.startswith("hit") or ctx.status_code >= 400:
            return
        if reply.status_code >= 400 or not response_cacheable(
            reply.body, tool_calls_ok=pending.policy.tool_calls_ok
        ):
            return
        assert reply.body is not None
        body = {k: v for k, v in reply.body.items() if v is not None}
        if isinstance(body.get("usage"), dict) and "energy_joules" in body["usage"]:
            # The engine's energy for this answer; a replay costs none, so it must not say so.
            body["usage"] = {k: v for k, v in body["usage"].items() if k != "energy_joules"}
        dep = ctx.deployment
        usage = ctx.usage
        # at the configured price (a record only: a hit is priced by the account stage)
        cost = dep.cost_usd(usage.prompt_tokens, usage.completion_tokens) if dep else Decimal(0)
        now = utcnow()
        entry = StoredEntry(
            id=new_id(),
            tenant_id=ctx.tenant.id,
            scope=pending.keys.scope,
            key=pending.keys.exact,
            model=ctx.model,
            query=pending.keys.query,
            embedding=pending.vector,  # None: `put` embeds the query itself
            response=orjson.dumps(body),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=cost,
            created_at=now,
            expires_at=now + timedelta(seconds=pending.ttl_s),
            # in the same (upstream) tokens as prompt_tokens, as the miss's saving counted them
            prompt_tokens_removed=tokens_removed(ctx),
        )
        await self.cache.put(entry, pending.policy.max_entries)

    def _compression(self, ctx: RequestContext) -> str:
        """The compression the compress stage will apply to this request ("" for none).

        It runs after this stage and may cut the prompt, so an answer stored from a cut
        prompt must not serve a request that turned compression off (or asked for another
        cut): the options are part of the keys. One mode per tenant, the usual case, shares
        entries as before."""
        if ctx.endpoint != "chat" or not isinstance(ctx.body.get("messages"), list):
            return ""
        options = resolve_options(ctx.headers, ctx.tenant.flags, self.compress_default)
        return "" if options.mode == "off" else repr(options)

    def _hit(
        self, ctx: RequestContext, entry: StoredEntry, status: str, similarity: float | None
    ) -> Reply:
        ctx.cache_status = status
        ctx.cache_similarity = similarity
        if similarity is not None:
            ctx.extra_headers[SIMILARITY_HEADER] = f"{similarity:.4f}"
        # The stored answer's real count (the upstream's usage), which the replayed body also
        # reports: exact for an exact hit; for a semantic hit, its cached twin's. The request's
        # own estimate (characters / 4) is a budget guess, not a billing number.
        prompt_tokens = entry.prompt_tokens or ctx.prompt_tokens_estimate
        body = fresh_body(entry.response, ctx.request_id)
        # The provider's own prompt cache served part of the stored answer's prompt: the
        # request avoided only what that cost, and the replayed usage says so too.
        cached = _cached_tokens(body, prompt_tokens)
        ctx.usage = Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=entry.completion_tokens,
            cached_tokens=cached,
            **priced_extras(ctx, body),  # its searches, reasoning: what the call was billed
            source="cache",
            service_tier=asked_tier(ctx),  # what the avoided call would have been priced at
        )
        ctx.hit_tokens_removed = entry.prompt_tokens_removed
        baseline = baseline_of(ctx, self.catalog)
        # At the configured price; the account stage re-prices it at the price its miss was
        # accounted at (a hardware-priced deployment's comes from the router).
        avoided = (
            hit_counterfactual(ctx, baseline.price.for_tier(ctx.usage.service_tier))
            if baseline
            else entry.cost_usd
        )
        ctx.cost_usd = Decimal(0)
        ctx.counterfactual_cost_usd = avoided
        ctx.savings.cache_usd = avoided
        if ctx.stream:
            return Reply(chunks=replay(chunks_of(body, include_usage=ctx.client_wants_usage)))
        return Reply(body=body)

    def _remember(self, ledger_id: str, pending: _Pending) -> None:
        self._pending[ledger_id] = pending
        while len(self._pending) > MAX_PENDING:
            self._pending.popitem(last=False)


def _cached_tokens(body: dict[str, Any], prompt_tokens: int) -> int:
    usage = body.get("usage")
    details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
    value = details.get("cached_tokens") if isinstance(details, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        return 0
    return min(max(value, 0), prompt_tokens)
