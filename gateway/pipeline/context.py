"""What flows through the pipeline: the request context, the reply, and the stage contract.

Each stage records what it decided, and what that saved, on the `RequestContext`; response
headers and the ledger row are built from it. Nothing here imports FastAPI.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from gateway.routing.catalog import Deployment
    from gateway.routing.router import RoutePlan

Json = dict[str, Any]
EndpointName = Literal["chat", "completions", "embeddings"]
# The API the client called; "responses" is served by the chat endpoint's stages.
ApiName = Literal["chat", "completions", "embeddings", "responses"]
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class TenantInfo:
    """The authenticated caller, as cached from the `tenants` / `api_keys` rows."""

    id: str
    name: str
    key_id: str | None
    budget_usd: Decimal | None = None
    budget_period: str = "monthly"
    rpm: int | None = None
    tpm: int | None = None
    default_slo_ms: int | None = None
    flags: dict[str, Any] = field(default_factory=dict)

    def allows_model(self, model: str) -> bool:
        allowed = self.flags.get("models")
        return not allowed or model in allowed


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0  # written to the provider's prompt cache (part of prompt_tokens)
    cache_write_1h_tokens: int = 0  # of those, written to its 1-hour cache (Anthropic: 2x input)
    audio_prompt_tokens: int = 0  # audio in the prompt (part of prompt_tokens; OpenAI's details)
    audio_completion_tokens: int = 0  # audio in the answer (part of completion_tokens)
    web_searches: int = 0  # web searches billed apiece (a search model's, a search tool's)
    web_search_size: str | None = None  # the search context size they were billed at
    reasoning_tokens: int = 0  # of the completion, where priced apart (Qwen thinking)
    citation_tokens: int = 0  # Perplexity's, billed beside the prompt
    image_prompt_tokens: int = 0  # images in the prompt (part of it), where priced apart
    image_completion_tokens: int = 0  # images in the answer (part of it): Gemini's image models
    source: str = "upstream"  # "upstream", "tiktoken" or "cache"
    service_tier: str | None = None  # the provider's tier that served it, when it says (prices)


@dataclass(slots=True)
class Savings:
    """Dollars each technique saved on this request, against the counterfactual."""

    cache_usd: Decimal = ZERO
    compression_usd: Decimal = ZERO
    routing_usd: Decimal = ZERO

    @property
    def total_usd(self) -> Decimal:
        return self.cache_usd + self.compression_usd + self.routing_usd


@dataclass(slots=True, weakref_slot=True)  # weakly held by the budget (BudgetBook.hold)
class RequestContext:
    request_id: str
    ledger_id: str
    endpoint: EndpointName
    body: Json  # what goes upstream; stages may rewrite it (compression, model)
    tenant: TenantInfo
    model: str  # what the client asked for
    api: ApiName | None = None  # when not the endpoint itself (the ledger's `endpoint` column)
    stream: bool = False
    client_wants_usage: bool = False
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased request headers
    started: float = field(default_factory=time.perf_counter)
    slo_ms: int | None = None
    # limits
    reserved_usd: Decimal = ZERO
    reserve_epoch: int | None = None  # the budget generation the reservation went into
    period_start: datetime | None = None
    prompt_tokens_estimate: int = 0
    tpm_charged: int = 0
    tpm_bucket: int | None = None  # the rate limiter's bucket tpm_charged went into
    # cache
    cache_status: str = "bypass"
    cache_similarity: float | None = None
    hit_tokens_removed: int = 0  # a hit: prompt tokens compression cut from its miss's prompt
    # compression
    compression_method: str | None = None
    prompt_tokens_original: int | None = None  # tiktoken count before compression
    prompt_tokens_compressed: int | None = None  # ... and after (same counter, comparable)
    # routing
    candidates: list[Deployment] = field(default_factory=list)
    deployment: Deployment | None = None
    route_reason: str | None = None
    predicted_latency_ms: float | None = None
    attempts: list[str] = field(default_factory=list)
    route_plan: RoutePlan | None = None  # the ranked, priced candidates (dispatch follows it)
    # outcome
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal = ZERO
    counterfactual_cost_usd: Decimal = ZERO
    savings: Savings = field(default_factory=Savings)
    status_code: int = 200
    error_code: str | None = None
    ttft_ms: float | None = None
    latency_ms: float | None = None
    slo_met: bool | None = None
    energy_joules: float | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def prompt_tokens_removed(self) -> int:
        """Prompt tokens the compress stage cut from this request (0 when it did not run)."""
        if self.prompt_tokens_original is None or self.prompt_tokens_compressed is None:
            return 0
        return max(0, self.prompt_tokens_original - self.prompt_tokens_compressed)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0


@dataclass(slots=True)
class Reply:
    """A stage's answer: a JSON body, or a stream of chunk objects (never both)."""

    body: Json | None = None
    chunks: AsyncIterator[Json] | None = None
    status_code: int = 200


class Stage(Protocol):
    async def before(self, ctx: RequestContext) -> Reply | None:
        """Run before dispatch; a Reply ends the request early (e.g. a cache hit)."""
        ...

    async def after(self, ctx: RequestContext, reply: Reply) -> None:
        """See the finished result (for a stream: after its last chunk, before `[DONE]`)."""
        ...
