"""Limits stage: per-tenant requests in flight, RPM/TPM (sliding window, shared by the
processes on one Postgres database through limits_sync) and the budget reservation."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

from gateway.accounting.budgets import BudgetBook, BudgetStoreUnavailable, period_start
from gateway.accounting.pricing import (
    asks_hour_cache,
    audio_asked,
    images_asked,
    web_search_asked,
)
from gateway.accounting.tokenizer import prompt_tokens_ceiling
from gateway.db.session import FailureLog
from gateway.errors import NoHealthyDeployment, RateLimited
from gateway.pipeline.concurrency import InFlight
from gateway.pipeline.context import Reply, RequestContext
from gateway.pipeline.route import max_tokens_of
from gateway.providers.base import prompts_in
from gateway.routing.catalog import Catalog, Deployment
from gateway.routing.local_load import EngineLoad, LocalThroughput
from gateway.routing.router import Router

log = logging.getLogger("thriftgate.limits")

WINDOW_S = 60.0
DEFAULT_EXPECTED_COMPLETION = 512  # the TPM charge of a request without max_tokens
# A budget reservation for a request without max_tokens, until its model has given this many
# answers: then the long end (the router's high quantile) of those answers, else this default.
UNCAPPED_COMPLETION_TOKENS = 4096
MIN_LEARNED_ANSWERS = 32
# Syncs a request past its process's share of a limit waits for (each one a round of the
# processes' shares of what is left), then it is checked against the limit as it stands.
SHARE_WAITS = 4


@dataclass(slots=True)
class _Window:
    start: float
    current: float = 0.0
    previous: float = 0.0
    bucket: int = 0  # which bucket `current` is (counts up as the window rolls)

    def roll(self, now: float) -> None:
        elapsed = now - self.start
        if elapsed >= 2 * WINDOW_S:
            self.previous, self.current, self.start = 0.0, 0.0, now
            self.bucket += 2  # the last bucket is out of the window too
        elif elapsed >= WINDOW_S:
            self.previous, self.current, self.start = self.current, 0.0, self.start + WINDOW_S
            self.bucket += 1

    def adjust(self, delta: float, bucket: int | None) -> None:
        """Correct a charge made in `bucket` by `delta`. A refund comes off the bucket the
        charge went into, which may have rolled into the previous one meanwhile (a request in
        flight at the boundary), or out of the window (nothing left to give back); an extra
        charge goes into the current bucket, where it ends."""
        if delta < 0 and bucket is not None and bucket != self.bucket:
            if bucket == self.bucket - 1:
                self.previous = max(0.0, self.previous + delta)
            return
        self.current = max(0.0, self.current + delta)

    def used(self, now: float) -> float:
        frac = (now - self.start) / WINDOW_S
        return self.previous * max(0.0, 1.0 - frac) + self.current

    def retry_after(self, now: float, limit: float, need: float) -> float:
        """Seconds until `need` more fits under `limit` if nothing else arrives. The previous
        bucket's weight fades through the current window and the current bucket's through
        the next one, so the wait is often past the bucket's end."""
        room = limit - need
        at = 2 * WINDOW_S  # room < 0: never within the horizon; the full horizon then
        if room >= self.current and self.previous > 0:
            at = (1.0 - (room - self.current) / self.previous) * WINDOW_S  # in this bucket
        elif room >= self.current:
            at = 0.0
        elif room >= 0 and self.current > 0:
            at = WINDOW_S + (1.0 - room / self.current) * WINDOW_S  # in the next bucket
        return max(1.0, math.ceil(self.start + at - now))

    def clear_s(self, now: float) -> float:
        """Seconds until nothing counted now is in the window (OpenAI's `x-ratelimit-reset-*`:
        until the limit is back to its initial state, if nothing else arrives)."""
        if self.current > 0:
            return max(0.0, self.start + 2 * WINDOW_S - now)
        if self.previous > 0:
            return max(0.0, self.start + WINDOW_S - now)
        return 0.0


class RateLimiter:
    """Sliding-window counters (the two-bucket approximation) for requests and tokens.

    Counted in this process; `others_requests` / `others_tokens` are what the other processes
    on the database last said they count (limits_sync, about once a second), and a request is
    admitted against the sum. A burst would pass the limit by what the processes admit before
    they hear of each other (R x the limit within one interval, with R processes): so a
    request past this process's share of what was left of a limit at the last sync (what was
    left / (2 x `processes` - 1)) waits for a sync first (`past_share`, then limits_sync.wait),
    one for all such requests at once. Only a tenant near its limit waits (a few rounds).
    """

    def __init__(self) -> None:
        self._req: dict[str, _Window] = {}
        self._tok: dict[str, _Window] = {}
        self.others_requests: dict[str, float] = {}
        self.others_tokens: dict[str, float] = {}
        self._touched: dict[str, float] = {}  # tenant -> when it was last counted (monotonic)
        self.processes = 1  # sharing the database's counts, this one included (limits_sync)
        self._since_sync: dict[str, list[float]] = {}  # tenant -> [requests, tokens] admitted

    def synced(self) -> None:
        """limits_sync is about to write this process's counts: admissions start again."""
        self._since_sync = {}

    def usage(self) -> dict[str, tuple[float, float]]:
        """This process's counts in the window now, by tenant: (requests, tokens), for the
        tenants counted within the last two windows (33,000 idle ones cost nothing a sync)."""
        now = time.monotonic()
        out: dict[str, tuple[float, float]] = {}
        for tenant_id, at in list(self._touched.items()):
            if now - at > 2 * WINDOW_S:
                del self._touched[tenant_id]  # everything it counted has left the window
                continue
            counts = []
            for windows in (self._req, self._tok):
                w = windows.get(tenant_id)
                if w is not None:
                    w.roll(now)
                counts.append(w.used(now) if w is not None else 0.0)
            out[tenant_id] = (counts[0], counts[1])
        return out

    def check(self, tenant_id: str, rpm: int | None, tpm: int | None, tokens: int) -> int | None:
        """Admit a request or raise RateLimited (with the `headers`); returns the TPM bucket
        the tokens were charged to (for `adjust_tokens`), None without a TPM limit."""
        now = time.monotonic()
        if rpm:
            w = self._req.setdefault(tenant_id, _Window(now))
            w.roll(now)
            others = self.others_requests.get(tenant_id, 0.0)
            if w.used(now) + others + 1 > rpm:
                exc = RateLimited(
                    f"Rate limit reached: {rpm} requests per minute.",
                    retry_after_s=_retry_after(w, now, rpm, 1, others),
                )
                raise self._explained(exc, tenant_id, rpm, tpm)
        if tpm:
            if tokens > tpm:
                raise self._explained(_never_fits(tokens, tpm), tenant_id, rpm, tpm)
            t = self._tok.setdefault(tenant_id, _Window(now))
            t.roll(now)
            others = self.others_tokens.get(tenant_id, 0.0)
            if t.used(now) + others + tokens > tpm:
                exc = RateLimited(
                    f"Rate limit reached: {tpm} tokens per minute.",
                    retry_after_s=_retry_after(t, now, tpm, tokens, others),
                )
                raise self._explained(exc, tenant_id, rpm, tpm)
        self._touched[tenant_id] = now
        if self.processes > 1:
            since = self._since_sync.setdefault(tenant_id, [0.0, 0.0])
            since[0] += 1
            since[1] += tokens
        if rpm:
            self._req[tenant_id].current += 1
        if tpm:
            self._tok[tenant_id].current += tokens
            return self._tok[tenant_id].bucket
        return None

    def past_share(self, tenant_id: str, rpm: int | None, tpm: int | None, tokens: int) -> bool:
        """Whether admitting this request takes this process past its share of the room a
        limit had at the last sync: admitted since then (this one too) > room / (2 x
        processes - 1), rounded up. Not room / processes: each process's room is the one it saw
        at its own sync, and the others may each have taken a share since (measured, RPM 60
        over 4 processes in a burst: 97-107 admitted with room / processes, 82-85 with this).
        Each may take one of the last few: over by fewer than `processes` there."""
        if self.processes <= 1:
            return False
        now = time.monotonic()
        since = self._since_sync.get(tenant_id, (0.0, 0.0))
        for i, limit, windows, others, need in (
            (0, rpm, self._req, self.others_requests, 1),
            (1, tpm, self._tok, self.others_tokens, tokens),
        ):
            if not limit:
                continue
            w = windows.get(tenant_id)
            if w is not None:
                w.roll(now)
            mine = w.used(now) if w is not None else 0.0
            taken = since[i] + need
            room_then = limit - (mine + others.get(tenant_id, 0.0)) + since[i]
            if room_then > 0 and taken > math.ceil(room_then / (2 * self.processes - 1)):
                return True
        return False

    def headers(self, tenant_id: str, rpm: int | None, tpm: int | None) -> dict[str, str]:
        """OpenAI's rate-limit headers for the tenant's limits as they stand: each limit, what
        is left of it, and when it is back to its initial state (`6m0s`, `1.5s`, `20ms`)."""
        now = time.monotonic()
        out: dict[str, str] = {}
        for kind, limit, windows, others in (
            ("requests", rpm, self._req, self.others_requests),
            ("tokens", tpm, self._tok, self.others_tokens),
        ):
            if not limit:
                continue
            w = windows.get(tenant_id)
            if w is not None:
                w.roll(now)
            used = (w.used(now) if w is not None else 0.0) + others.get(tenant_id, 0.0)
            out[f"x-ratelimit-limit-{kind}"] = str(limit)
            out[f"x-ratelimit-remaining-{kind}"] = str(max(0, math.floor(limit - used)))
            out[f"x-ratelimit-reset-{kind}"] = duration_text(w.clear_s(now) if w else 0.0)
        return out

    def _explained(
        self, exc: RateLimited, tenant_id: str, rpm: int | None, tpm: int | None
    ) -> RateLimited:
        exc.headers.update(self.headers(tenant_id, rpm, tpm))
        return exc

    def adjust_tokens(self, tenant_id: str, delta: int, bucket: int | None = None) -> None:
        """Replace the estimate with the actual count once usage is known; `bucket` is what
        `check` returned for the request (a request may finish in a later bucket)."""
        w = self._tok.get(tenant_id)
        if w is not None:
            now = time.monotonic()
            w.roll(now)
            w.adjust(delta, bucket)
            self._touched[tenant_id] = now


def _retry_after(w: _Window, now: float, limit: float, need: float, others: float) -> float:
    """This process's window's wait with the other processes' counts taken off the limit. How
    their counts fade is not known here: a wait they alone would make past a window is one
    window (they fade within two), never the two-minute horizon of a limit that never fits."""
    wait = w.retry_after(now, limit - others, need)
    return min(wait, WINDOW_S) if others > 0 else wait


def duration_text(seconds: float) -> str:
    """A duration as OpenAI writes its `x-ratelimit-reset-*` headers: `20ms`, `1.5s`, `6m0s`."""
    ms = math.ceil(round(seconds * 1000, 6))  # whole ms first: 119.9997 s is 2m0s, not 1m60s
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest = divmod(ms, 60_000)
    text = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{text}s" if minutes else f"{text}s"


def _never_fits(tokens: int, tpm: int) -> RateLimited:
    """A request larger than the whole per-minute limit fits in no window: no Retry-After, and
    `x-should-retry: false`, which OpenAI's SDKs obey instead of retrying a 429 (two minutes of
    waiting for a certain refusal). Still OpenAI's 429 `rate_limit_exceeded`."""
    exc = RateLimited(
        f"Request of ~{tokens} tokens exceeds the limit of {tpm} tokens per minute, so it can "
        "never pass: shorten the prompt or set a smaller max_tokens.",
        retry_after_s=0,
    )
    exc.headers = {"x-should-retry": "false"}
    return exc


class RateLimitStage:
    """Requests in flight and RPM/TPM per tenant; runs before the cache, so hits count against
    the rate limits too. Every answer to a tenant with RPM/TPM limits carries OpenAI's
    `x-ratelimit-*` headers (its 429s too)."""

    def __init__(self, limiter: RateLimiter, in_flight: InFlight | None = None) -> None:
        self.limiter = limiter
        self.in_flight = in_flight or InFlight()
        # limits_sync's: wait for a sync of the counts with the other processes
        self.wait_sync: Callable[[], Awaitable[bool]] | None = None

    async def before(self, ctx: RequestContext) -> Reply | None:
        tenant = ctx.tenant
        tokens = ctx.prompt_tokens_estimate + _expected_completion(ctx)
        if self.wait_sync is not None and (tenant.rpm or tenant.tpm):
            for _ in range(SHARE_WAITS):  # near its limit: what the others took, first
                if not self.limiter.past_share(tenant.id, tenant.rpm, tenant.tpm, tokens):
                    break
                if not await self.wait_sync():
                    break
        try:
            self.in_flight.enter(ctx)
            ctx.tpm_bucket = self.limiter.check(tenant.id, tenant.rpm, tenant.tpm, tokens)
        except RateLimited as exc:  # over its cap in flight: the limits' headers too
            if tenant.rpm or tenant.tpm:
                limits = self.limiter.headers(tenant.id, tenant.rpm, tenant.tpm)
                exc.headers = {**limits, **exc.headers}
            raise
        ctx.tpm_charged = tokens  # only once charged: a refusal here gives nothing back
        ctx.period_start = period_start(tenant.budget_period)
        if tenant.rpm or tenant.tpm:
            ctx.extra_headers.update(self.limiter.headers(tenant.id, tenant.rpm, tenant.tpm))
        return None

    async def after(self, ctx: RequestContext, reply: Reply) -> None:
        self.account_now(ctx)

    def account_now(self, ctx: RequestContext) -> None:
        """The estimate charged becomes what was used: zero for a request refused later (its
        budget) or failed before anything was sent, which must not hold the tenant's TPM.
        Its slot in flight is given back. Synchronous: a stream its client closed is settled
        through this too (Pipeline)."""
        self.in_flight.leave(ctx)
        actual = ctx.usage.prompt_tokens + ctx.usage.completion_tokens
        if ctx.tenant.tpm and actual != ctx.tpm_charged:
            self.limiter.adjust_tokens(ctx.tenant.id, actual - ctx.tpm_charged, ctx.tpm_bucket)


class BudgetStage:
    """Reserve the request's estimated cost before dispatch (settled by the ledger writer).

    Runs after the cache: a hit costs nothing, so it needs no reservation (and no round trip).
    Every request admitted beside another overspends by what its answer exceeds its
    reservation, so the reservation is priced on a long answer: `max_tokens` (x n) when sent,
    which the upstream enforces; else the long end of the model's recent answers (the
    router's learned high quantile), or `uncapped_completion` tokens until it has seen
    `MIN_LEARNED_ANSWERS`. A lone request is never refused for a large reservation (the
    statement admits while `spent + reserved < budget`); only concurrency near the end of a
    budget is.
    """

    def __init__(
        self,
        budgets: BudgetBook,
        catalog: Catalog,
        *,
        fail_open: bool,
        router: Router | None = None,
        uncapped_completion: int = UNCAPPED_COMPLETION_TOKENS,
    ) -> None:
        self.budgets = budgets
        self.catalog = catalog
        self.fail_open = fail_open
        self.router = router
        self.uncapped_completion = uncapped_completion
        self._answer_caps: dict[str, int | None] = {}
        # One line when the budget store fails and one when it works again, not one a request
        # (1,005 lines in 15 s of a database short of connections, each naming only
        # BudgetStoreUnavailable, never why).
        self._store_down = FailureLog(
            log,
            "the budget check (budget store unavailable: serving under fail-open, "
            "budgets not enforced)",
        )

    async def before(self, ctx: RequestContext) -> Reply | None:
        tenant = ctx.tenant
        if tenant.budget_usd is None:
            return None
        amount = self._estimate_cost(ctx, self._reserved_completion(ctx))
        try:
            ctx.period_start, ctx.reserve_epoch = await self.budgets.reserve(
                tenant.id, tenant.budget_usd, tenant.budget_period, amount
            )
            ctx.reserved_usd = amount
            self._store_down.succeeded()
            if amount:
                self.budgets.hold(
                    ctx.ledger_id, tenant.id, ctx.period_start, amount, ctx.reserve_epoch, ctx,
                    period=tenant.budget_period,
                )  # fmt: skip
        except BudgetStoreUnavailable as exc:
            if not self.fail_open:
                raise NoHealthyDeployment(
                    "Budget store unavailable; refusing under the fail-closed policy.",
                    code="budget_store_unavailable",
                ) from exc
            self._store_down.failed()
        return None

    def _reserved_completion(self, ctx: RequestContext) -> int:
        """Completion tokens to reserve for: the cap if sent, else a long answer of the model."""
        if max_tokens_of(ctx.body) is not None or ctx.endpoint == "embeddings":
            return _expected_completion(ctx)
        tokens = self.uncapped_completion
        lengths = self.router.lengths.get(ctx.model) if self.router is not None else None
        if lengths is not None and lengths.count >= MIN_LEARNED_ANSWERS:
            tokens = lengths.estimate(None, ctx.prompt_tokens_estimate).high
        return tokens * _choices(ctx)

    def _estimate_cost(self, ctx: RequestContext, expected_completion: int) -> Decimal:
        """The most expensive candidate's price: a reservation must not under-estimate."""
        group = ctx.candidates or self.catalog.group(ctx.model)
        if not group:
            return Decimal(0)
        # the rate limits' estimate counts an image as nothing and a CJK character as a
        # quarter token: each request admitted beside others would overspend by the difference
        prompt = max(ctx.prompt_tokens_estimate, prompt_tokens_ceiling(ctx.body))
        uncapped = max_tokens_of(ctx.body) is None and ctx.endpoint != "embeddings"
        tier = ctx.body.get("service_tier")
        tier = tier if isinstance(tier, str) else None
        hour = asks_hour_cache(ctx.body)
        audio = audio_asked(ctx.body)
        search = web_search_asked(ctx.body)
        drawn = images_asked(ctx.body)
        costs = []
        for dep in group:
            completion = (
                self._answer_limit(dep, expected_completion, ctx)
                if uncapped
                else expected_completion
            )
            costs.append(
                self._dearest_cost(
                    dep,
                    prompt,
                    completion,
                    tier,
                    hour_cache=hour,
                    audio=audio,
                    search=search,
                    images=drawn,
                )
            )
        return max(costs)

    def _answer_limit(self, dep: Deployment, completion: int, ctx: RequestContext) -> int:
        """An uncapped reservation, at most the longest answer the deployment gives (a local
        engine stops at its default_max_tokens: reserving 4,096 refuses concurrent requests
        a budget could serve)."""
        if dep.name not in self._answer_caps:
            self._answer_caps[dep.name] = _max_answer_tokens(dep)
        cap = self._answer_caps[dep.name]
        return completion if cap is None else min(completion, cap * _choices(ctx))

    def _dearest_cost(
        self,
        dep: Deployment,
        prompt: int,
        completion: int,
        tier: str | None = None,
        *,
        hour_cache: bool = False,
        audio: tuple[bool, bool] = (False, False),
        search: tuple[int, str | None] = (0, None),
        images: bool = False,
    ) -> Decimal:
        """What `dep` may bill for the request, at most.

        A hardware-priced deployment ($/hour, usually $0 per token in its config) is billed at
        its effective price at the engine's load when the request finishes (the account stage),
        which can be lower than now: the reservation takes the dearest load the engine can be
        at under its learned speeds (usually a request alone on it). A prompt may be written to
        the provider's prompt cache, billed above the input price (Anthropic: 1.25x, 2x for
        the 1-hour cache a request asks for with `"ttl": "1h"`): then the whole prompt is
        reserved at that price. A prompt with audio in it, and an answer asked in audio, are
        reserved at the audio prices (`audio`: heard, spoken). A prompt above a long-context
        threshold (Gemini 2.5 Pro above 200k tokens) is reserved at that threshold's prices,
        and the web searches it may make (`search`: how many, the context size) at theirs. An
        answer may be all reasoning: at the reasoning price where it is the dearer (Qwen's
        thinking mode, $4 per 1M where answers are $1.20), and an answer asked with images in
        it at the image price."""
        price = dep.price
        at_length = price.at_prompt(prompt)  # its cache prices, for what may be written
        write = at_length.cache_write_input_per_mtok
        written = prompt if write is not None and write > at_length.input_per_mtok else 0
        hour = 0
        hour_price = at_length.cache_write_1h_input_per_mtok
        if (
            hour_cache
            and hour_price is not None
            and hour_price > (write or at_length.input_per_mtok)
        ):
            written = hour = prompt
        heard, spoken = prompt if audio[0] else 0, completion if audio[1] else 0
        thinking = at_length.reasoning_output_per_mtok
        thought = completion if thinking is not None and thinking > at_length.output_per_mtok else 0
        drawn = completion if images else 0
        configured = price.cost_usd(
            prompt, completion, 0, written, hour,
            audio_prompt_tokens=heard, audio_completion_tokens=spoken,
            web_searches=search[0], web_search_size=search[1], reasoning_tokens=thought,
            image_completion_tokens=drawn,
        )  # fmt: skip
        if tier is not None and price.tiers:  # a dearer tier asked for (priority) is reserved
            at_tier = price.for_tier(tier).cost_usd(
                prompt, completion, 0, written, hour,
                audio_prompt_tokens=heard, audio_completion_tokens=spoken,
                web_searches=search[0], web_search_size=search[1], reasoning_tokens=thought,
                image_completion_tokens=drawn,
            )  # fmt: skip
            configured = max(configured, at_tier)
        local = self.router.local.get(dep.name) if self.router is not None else None
        if local is None or dep.config.hardware_usd_per_hour is None:
            return configured
        quotes = [local.quote(EngineLoad(queue_depth=0, running=r), 1) for r in _load_levels(local)]
        return max([configured, *(q.price.cost_usd(prompt, completion) for q in quotes)])

    async def after(self, ctx: RequestContext, reply: Reply) -> None:
        self.account_now(ctx)

    def account_now(self, ctx: RequestContext) -> None:
        """Finished (also a stream its client closed): the account stage, which runs next,
        writes the reservation's generation into the ledger row, so it is no longer carried
        into new generations (BudgetBook.hold)."""
        self.budgets.release_hold(ctx.ledger_id)


def _max_answer_tokens(dep: Deployment) -> int | None:
    if dep.provider != "local":
        return None
    from gateway.providers.local import max_answer_tokens  # the engine's settings, lazily

    return max_answer_tokens(dep)


def _load_levels(local: LocalThroughput) -> list[int]:
    """Other sequences running beside one more request: one per learned concurrency level
    (1, 2, 3-4, 5-8, ...), up to the engine's slots (queued requests change no price)."""
    levels, running = [], 0
    while running < local.max_concurrency:
        levels.append(running)
        running = running * 2 + 1
    return levels


def _expected_completion(ctx: RequestContext) -> int:
    value = max_tokens_of(ctx.body)
    if value is not None:
        return value * _choices(ctx)
    if ctx.endpoint == "embeddings":
        return 0
    return DEFAULT_EXPECTED_COMPLETION


def _choices(ctx: RequestContext) -> int:
    """Answers the upstream generates (and bills): `n`, or `best_of` when larger (legacy
    completions generate best_of answers and return the n best; vLLM takes it on chat too),
    for each prompt of a legacy completions request (a list of strings or of token arrays)."""
    counts = [ctx.body.get("n"), ctx.body.get("best_of")]
    per_prompt = max([c for c in counts if isinstance(c, int) and not isinstance(c, bool)] + [1])
    return per_prompt * prompts_in(ctx.body, ctx.endpoint)
