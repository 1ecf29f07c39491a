"""The router's live state: latency models, breakers, completion lengths and local-engine load.

`plan()` prices and predicts every candidate of a request and hands them to `RoutePolicy`;
`observe_*()` feed the outcome back. No I/O and no awaits, so a decision costs microseconds and
is safe to call on the event loop; persistence and metrics read `snapshot()` from outside.
One `Router` lives in the app's `Services` (built in the lifespan), never at module level.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gateway.accounting.pricing import Price
from gateway.routing.breaker import BreakerState, CircuitBreaker
from gateway.routing.catalog import AUTO_MODEL, Catalog, Deployment
from gateway.routing.completion import CompletionEstimate, CompletionLengths
from gateway.routing.flight import Flight, overdue_factors, stretch
from gateway.routing.latency import LatencyModel, LatencyPrediction
from gateway.routing.local_load import EngineLoad, LocalThroughput
from gateway.routing.policy import FASTEST_SLO_UNMET, PROBE_SLO_UNMET, Candidate, RoutePolicy
from gateway.settings import RoutingConfig

ENGINE_REPORT_FRESH_S = 10.0  # an engine load report older than this is ignored
MAX_RETRY_AFTER_S = 86_400.0  # the longest Retry-After `retry_after_s` gives


@dataclass(frozen=True, slots=True)
class RouterTuning:
    failure_threshold: int = 5
    cooldown_s: float = 5.0
    # Each failed half-open probe doubles the cool-down up to this: a dead upstream costs one
    # (retried) request per 30 s, and a recovered one is back within 30 s.
    max_cooldown_s: float = 30.0
    latency_alpha: float = 0.15
    # the latency EWMAs speed up while their errors keep one sign (Trigg-Leach; see latency.py)
    adaptive_smoothing: bool = True
    latency_quantile: float = 0.9
    completion_quantile: float = 0.95  # the answer length a total-time SLO is judged on
    # With max_tokens: price on the cap itself (the literal rule), not on the learned share of
    # it that answers use (see gateway/routing/completion.py).
    price_on_max_tokens: bool = False
    # A deployment unobserved for this long drifts back toward its configured prior, so one
    # that was slow once gets tried again instead of being shunned for good.
    stale_after_s: float = 60.0
    stale_half_life_s: float = 60.0
    # When no deployment is predicted to meet the SLO, one whose figures are this old, with
    # nothing in flight to refresh them, and whose config says it could meet it, is tried
    # instead of the fastest: its bad figures may be from an incident that has passed (0: off).
    probe_after_s: float = 10.0

    @classmethod
    def from_config(cls, cfg: RoutingConfig) -> RouterTuning:
        return cls(
            failure_threshold=cfg.failure_threshold,
            cooldown_s=cfg.cooldown_s,
            max_cooldown_s=cfg.max_cooldown_s,
            latency_quantile=cfg.latency_quantile,
            price_on_max_tokens=cfg.price_on_max_tokens,
            probe_after_s=cfg.probe_after_s,
        )


@dataclass(slots=True)
class RoutePlan:
    """The ranked candidates for one request, and what the decision was based on."""

    model: str
    ranked: list[Candidate]
    reason: str
    slo_ms: float | None
    stream: bool
    prompt_tokens: int
    completion: CompletionEstimate
    default: Deployment | None  # the group's default: the "without routing" baseline

    @property
    def chosen(self) -> Candidate | None:
        return self.ranked[0] if self.ranked else None

    def default_cost_usd(self, prompt_tokens: int, completion_tokens: int) -> Decimal | None:
        if self.default is None:
            return None
        return self.default.cost_usd(prompt_tokens, completion_tokens)


class Router:
    def __init__(
        self,
        catalog: Catalog,
        *,
        auto_models: Sequence[str] = (),
        tuning: RouterTuning | None = None,
        clock: Callable[[], float] = time.monotonic,
        policy: RoutePolicy | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.catalog = catalog
        self.auto_models = tuple(auto_models)
        self.tuning = tuning or RouterTuning()
        self.clock = clock
        self.wall_clock = wall_clock  # only to carry the figures' age across a restart
        self.policy = policy or RoutePolicy()
        self.latency: dict[str, LatencyModel] = {}
        self.breakers: dict[str, CircuitBreaker] = {}
        self.local: dict[str, LocalThroughput] = {}
        self.lengths: dict[str, CompletionLengths] = {}
        self.in_flight: dict[str, int] = {}
        self.flights: dict[str, dict[int, Flight]] = {}
        # streams still waiting for their first token, oldest first: the overdue evidence
        self.awaiting_first: dict[str, dict[int, Flight]] = {}
        self.engine_loads: dict[str, EngineLoad] = {}
        for dep in catalog.deployments.values():
            self._add(dep)

    def _add(self, dep: Deployment) -> None:
        cfg = dep.config
        t = self.tuning
        prefill = cfg.options.get("prefill_ms_per_token")
        self.latency[dep.name] = LatencyModel(
            cfg.ttft_ms,
            cfg.ms_per_token,
            float(prefill) if isinstance(prefill, int | float) else None,
            alpha=t.latency_alpha,
            quantile=t.latency_quantile,
            adaptive=t.adaptive_smoothing,
        )
        self.breakers[dep.name] = CircuitBreaker(
            t.failure_threshold, t.cooldown_s, t.max_cooldown_s
        )
        self.in_flight[dep.name] = 0
        self.flights[dep.name] = {}
        self.awaiting_first[dep.name] = {}
        if cfg.hardware_usd_per_hour is not None:
            cold_tps = 1000.0 / cfg.ms_per_token if cfg.ms_per_token else 30.0
            self.local[dep.name] = LocalThroughput(
                cfg.hardware_usd_per_hour, cold_tps, max_concurrency=cfg.max_concurrency
            )

    def _new_lengths(self) -> CompletionLengths:
        t = self.tuning
        return CompletionLengths(q=t.completion_quantile, price_on_max_tokens=t.price_on_max_tokens)

    # -- candidates ---------------------------------------------------------------------

    def candidates(self, model: str, auto_models: Sequence[str] | None = None) -> list[Deployment]:
        """Deployments serving `model`; for `thriftgate/auto`, all of the acceptable models'."""
        if model != AUTO_MODEL:
            return list(self.catalog.group(model))
        models = auto_models if auto_models else self.auto_models
        seen: set[str] = set()
        out: list[Deployment] = []
        for m in models:
            for dep in self.catalog.group(m):
                if dep.name not in seen:
                    seen.add(dep.name)
                    out.append(dep)
        return out

    def default_for(
        self,
        model: str,
        auto_models: Sequence[str] | None = None,
        deployments: Sequence[Deployment] | None = None,
    ) -> Deployment | None:
        """The baseline: the group's default; for auto, the default of the first listed model.

        For auto, `deployments` (the tenant's candidates, in its list's order: its own
        `auto_models` narrowed to the models it may use) stand in for the file's list when no
        `auto_models` are given, so the baseline is one of the models the tenant could have had.
        """
        if model != AUTO_MODEL:
            return self.catalog.default_for(model)
        if not auto_models and deployments:
            first = deployments[0]
            return self.catalog.default_for(first.model) or first
        for m in auto_models if auto_models else self.auto_models:
            dep = self.catalog.default_for(m)
            if dep is not None:
                return dep
        return None

    def completion_estimate(
        self, model: str, max_tokens: int | None, prompt_tokens: int | None = None
    ) -> CompletionEstimate:
        lengths = self.lengths.get(model)
        if lengths is None:
            lengths = self.lengths[model] = self._new_lengths()
        return lengths.estimate(max_tokens, prompt_tokens)

    # -- the decision ---------------------------------------------------------------------

    def plan(
        self,
        model: str,
        *,
        prompt_tokens: int,
        max_tokens: int | None = None,
        slo_ms: float | None = None,
        stream: bool = False,
        auto_models: Sequence[str] | None = None,
        deployments: Iterable[Deployment] | None = None,
    ) -> RoutePlan:
        now = self.clock()
        if deployments is None:
            deps = self.candidates(model, auto_models)
        else:  # once each: a tenant's auto list may name a model twice
            deps = list({dep.name: dep for dep in deployments}.values())
        completion = self.completion_estimate(model, max_tokens, prompt_tokens)
        priced: list[Candidate] = []
        shut: list[Deployment] = []
        for dep in deps:
            if not self.breakers[dep.name].available(now):
                shut.append(dep)
                continue
            cost, latency = self.predict(dep, prompt_tokens, completion, now)
            priced.append(Candidate(dep, cost, latency))
        ranked, reason = self.policy.rank(priced, slo_ms, stream)
        if reason == FASTEST_SLO_UNMET and slo_ms is not None and self.tuning.probe_after_s > 0:
            ranked, reason = self._probe_first(
                ranked, reason, shut, slo_ms, stream, prompt_tokens, completion, now
            )
        return RoutePlan(
            model=model,
            ranked=ranked,
            reason=reason,
            slo_ms=slo_ms,
            stream=stream,
            prompt_tokens=prompt_tokens,
            completion=completion,
            default=self.default_for(model, auto_models, deps),
        )

    def _probe_first(
        self,
        ranked: list[Candidate],
        reason: str,
        shut: list[Deployment],
        slo_ms: float,
        stream: bool,
        prompt_tokens: int,
        completion: CompletionEstimate,
        now: float,
    ) -> tuple[list[Candidate], str]:
        """Nothing is predicted to meet the SLO: try a deployment that may have recovered.

        The request is expected to miss on the fastest as well, so it costs little to learn
        whether a deployment shunned since an incident or an outage is back. Nothing else would
        tell soon: a deployment no request goes to is never observed again, and an open
        breaker waits out its cool-down (up to 30 s). Candidates, in this order: one whose
        figures are `probe_after_s` old with nothing in flight there to refresh them; then one
        whose breaker is open past its base cool-down (its half-open probe is brought forward).
        Either only if its config figures say it could meet the SLO.
        """

        if ranked and ranked[0].latency.expected_ms(stream) <= slo_ms:
            return ranked, reason  # the fastest may well make it: no request to spare

        def could_meet(name: str) -> bool:
            prior = self.latency[name].predict_prior(prompt_tokens, completion.expected)
            return prior.judged_ms(stream) <= slo_ms

        stale = [
            (cand.cost_usd, i)
            for i, cand in enumerate(ranked[1:], start=1)
            if (last := self.latency[cand.name].last_observed) is not None
            and now - last >= self.tuning.probe_after_s
            and not self.in_flight[cand.name]
            and could_meet(cand.name)
        ]
        if stale:
            i = min(stale)[1]  # the cheapest of them
            return [ranked[i], *ranked[:i], *ranked[i + 1 :]], PROBE_SLO_UNMET
        for dep in shut:
            breaker = self.breakers[dep.name]
            if breaker.can_probe_early(now) and could_meet(dep.name):
                breaker.probe_now(now)
                cost, latency = self.predict(dep, prompt_tokens, completion, now)
                return [Candidate(dep, cost, latency, False), *ranked], PROBE_SLO_UNMET
        return ranked, reason

    def replan(self, plan: RoutePlan, tried: Iterable[str], elapsed_ms: float) -> list[Candidate]:
        """The fallback order after a failure, re-ranked for the time that is left.

        The first ranking was made for the whole SLO; after an attempt failed `elapsed_ms` into
        the request, the cheapest survivor may no longer fit what remains of it. Re-predicting
        (the failure has just been fed back, breakers may have opened) and ranking against
        `slo_ms - elapsed_ms` picks the cheapest one that still can make it, else the fastest.
        """
        now = self.clock()
        done = set(tried)
        priced: list[Candidate] = []
        for cand in plan.ranked:
            dep = cand.deployment
            if dep.name in done or not self.breakers[dep.name].available(now):
                continue
            cost, latency = self.predict(dep, plan.prompt_tokens, plan.completion, now)
            priced.append(Candidate(dep, cost, latency))
        slo = None if plan.slo_ms is None else plan.slo_ms - elapsed_ms
        ranked, _ = self.policy.rank(priced, slo, plan.stream)
        return ranked

    def predict(
        self, dep: Deployment, prompt_tokens: int, completion: CompletionEstimate, now: float
    ) -> tuple[Decimal, LatencyPrediction]:
        """Predicted cost (expected tokens) and latency (a long answer widens the tail)."""
        name = dep.name
        model = self.latency[name]
        local = self.local.get(name)
        if local is None:
            cost = dep.cost_usd(prompt_tokens, completion.expected)
            latency = model.predict(
                prompt_tokens, completion.expected, high_completion_tokens=completion.high
            )
        else:
            quote = local.quote(self.current_load(name, now), completion.expected)
            cost = quote.price.cost_usd(prompt_tokens, completion.expected)
            latency = model.predict(
                prompt_tokens,
                completion.expected,
                high_completion_tokens=completion.high,
                ms_per_token=quote.ms_per_token,
                extra_ttft_ms=quote.queue_wait_ms,
                extra_ttft_high_ms=quote.queue_wait_ms * local.wait_ratios.quantile(),
            )
        latency = self._relax_stale(model, latency, prompt_tokens, completion.high, now)
        waiting = self.awaiting_first[name]
        if waiting:
            latency = stretch(latency, *overdue_factors(waiting.values(), now))
        return cost, latency

    def effective_price(self, name: str, expected_completion_tokens: int = 256) -> Price | None:
        """A hardware-priced deployment's per-token price at its current load (for accounting:
        its configured token price is usually 0); None for ordinarily priced deployments."""
        local = self.local.get(name)
        if local is None:
            return None
        now = self.clock()
        return local.quote(self.current_load(name, now), expected_completion_tokens).price

    def _relax_stale(
        self, model: LatencyModel, pred: LatencyPrediction, prompt: int, tokens: int, now: float
    ) -> LatencyPrediction:
        last = model.last_observed
        t = self.tuning
        if last is None or now - last <= t.stale_after_s:
            return pred
        prior = model.predict_prior(prompt, tokens)
        if prior.total_high_ms >= pred.total_high_ms:
            return pred  # only optimistic: staleness never makes a fast deployment look slow
        keep: float = 0.5 ** ((now - last - t.stale_after_s) / t.stale_half_life_s)

        def mix(a: float, b: float) -> float:
            return b + (a - b) * keep

        return LatencyPrediction(
            mix(pred.ttft_ms, prior.ttft_ms),
            mix(pred.ttft_high_ms, prior.ttft_high_ms),
            mix(pred.total_ms, prior.total_ms),
            mix(pred.total_high_ms, prior.total_high_ms),
            pred.queue_wait_ms,
        )

    # -- feedback ---------------------------------------------------------------------------

    def start(
        self,
        candidate: Candidate,
        *,
        model: str,
        prompt_tokens: int,
        stream: bool,
        max_tokens: int | None = None,
    ) -> Flight | None:
        """Claim a slot on the candidate's deployment; None if its breaker refuses (open, or
        its half-open probe is taken). Every Flight must end in `succeed`, `fail` or `abandon`.
        """
        name = candidate.name
        now = self.clock()
        if not self.breakers[name].try_acquire(now):
            return None
        self.in_flight[name] += 1
        flight = Flight(
            name,
            model,
            prompt_tokens,
            stream,
            now,
            candidate.latency,
            self.in_flight[name],
            max_tokens=max_tokens,
        )
        self.flights[name][id(flight)] = flight
        if stream:
            self.awaiting_first[name][id(flight)] = flight
        return flight

    def first_token(self, flight: Flight, ttft_ms: float | None = None) -> None:
        """A stream's first chunk arrived: learn its TTFT now, not when the stream ends."""
        if flight.finished or flight.first_token_ms is not None:
            return
        now = self.clock()
        flight.first_token_ms = (now - flight.started) * 1000.0 if ttft_ms is None else ttft_ms
        self.awaiting_first[flight.name].pop(id(flight), None)
        if not flight.learn:
            return
        wait_ms = flight.predicted.queue_wait_ms
        if wait_ms > 0:  # it queued for a slot: its TTFT teaches the queue, not the engine
            local = self.local.get(flight.name)
            if local is not None:
                engine_ms = flight.predicted.ttft_ms - wait_ms
                local.observe_wait(wait_ms, flight.first_token_ms - engine_ms)
            return
        self.latency[flight.name].observe_ttft(flight.prompt_tokens, flight.first_token_ms, now=now)

    def succeed(
        self,
        flight: Flight,
        *,
        completion_tokens: int,
        total_ms: float | None = None,
        count_length: bool = True,
    ) -> None:
        """The attempt finished well (`count_length=False` when max_tokens cut it short)."""
        if not self._end(flight):
            return
        now = self.clock()
        total = (now - flight.started) * 1000.0 if total_ms is None else total_ms
        name = flight.name
        self.breakers[name].record_success()
        if flight.learn:  # else its time (a model load) is not the deployment's speed
            self._learn_latency(flight, completion_tokens, total, now)
        if count_length:
            lengths = self.lengths.get(flight.model) or self._new_lengths()
            self.lengths[flight.model] = lengths
            lengths.observe(completion_tokens, flight.prompt_tokens, flight.max_tokens)

    def _learn_latency(
        self, flight: Flight, completion_tokens: int, total: float, now: float
    ) -> None:
        name = flight.name
        ttft = flight.first_token_ms
        local = self.local.get(name)
        itl_override = None
        if local is not None and ttft is not None and completion_tokens > 1:
            decode_s = (total - ttft) / 1000.0
            if decode_s > 0:
                local.observe(flight.concurrency, (completion_tokens - 1) / decode_s)
            itl_override = 1000.0 / local.per_sequence_tokens_per_s(flight.concurrency)
        self.latency[name].observe(
            flight.prompt_tokens,
            completion_tokens,
            total,
            ttft,
            now=now,
            ms_per_token=itl_override,
            ttft_learned=ttft is not None or flight.predicted.queue_wait_ms > 0,
        )

    def fail(self, flight: Flight) -> None:
        """The upstream failed (connect error, 429, 5xx, timeout): counts toward its breaker."""
        if self._end(flight):
            self.breakers[flight.name].record_failure(self.clock())

    def abandon(self, flight: Flight) -> None:
        """Ended without a verdict on the upstream (the client went away, a bad request)."""
        if self._end(flight):
            self.breakers[flight.name].release()

    def _end(self, flight: Flight) -> bool:
        if flight.finished:
            return False
        flight.finished = True
        self.flights[flight.name].pop(id(flight), None)
        self.awaiting_first[flight.name].pop(id(flight), None)
        self.in_flight[flight.name] = max(0, self.in_flight[flight.name] - 1)
        return True

    def report_engine_load(self, name: str, load: EngineLoad) -> None:
        """The local engine's own view of its load (queue depth, running, tokens/s)."""
        self.engine_loads[name] = load
        local = self.local.get(name)
        if local is not None:
            local.observe_load(load)

    def current_load(self, name: str, now: float) -> EngineLoad:
        """The engine's load: its own fresh report, raised to what this gateway has in flight.

        A report is up to a poll interval old, and a burst routed since then is not in it; the
        gateway's in-flight count is exact for its own traffic but blind to other replicas'.
        Taking the larger of the two active counts covers both.
        """
        own = self.in_flight.get(name, 0)
        report = self.engine_loads.get(name)
        if report is None or now - report.observed_at > ENGINE_REPORT_FRESH_S:
            return EngineLoad(queue_depth=0, running=own, observed_at=now)
        reported = report.running + report.queue_depth
        if own <= reported:
            return report
        local = self.local.get(name)
        slots = local.max_concurrency if local is not None else own
        return EngineLoad(
            queue_depth=max(0, own - slots),
            running=min(own, slots),
            decode_tokens_per_s=report.decode_tokens_per_s,
            observed_at=report.observed_at,
        )

    def retry_after_s(self, deployments: Iterable[Deployment]) -> int:
        """For a 503 when every breaker of `deployments` is shut: whole seconds (at least 1)
        until the first of them lets a request through, for the response's Retry-After."""
        now = self.clock()
        waits = [self.breakers[dep.name].retry_in(now) for dep in deployments]
        wait = min(waits, default=self.tuning.cooldown_s)
        return max(1, math.ceil(min(wait, MAX_RETRY_AFTER_S)))  # an infinite cool-down: a day

    def breaker_state(self, name: str) -> BreakerState:
        return self.breakers[name].state(self.clock())

    # -- persistence ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Learned state by key: `dep:<name>` per deployment, `model:<name>` per model group."""
        out: dict[str, dict[str, Any]] = {}
        for name, lat in self.latency.items():
            state: dict[str, Any] = {"latency": lat.to_state()}
            if lat.last_observed is not None:
                # wall-clock time of the last observation: the monotonic clock restarts with
                # the process, and the figures' age is what lets a shunned deployment go stale
                state["observed_at"] = self.wall_clock() - (self.clock() - lat.last_observed)
            if name in self.local:
                state["local"] = self.local[name].to_state()
            out[f"dep:{name}"] = state
        for model, lengths in self.lengths.items():
            out[f"model:{model}"] = {"lengths": lengths.to_state()}
        return out

    def _restore_age(self, name: str, observed_at: Any) -> None:
        """Map the saved wall-clock time of the last observation onto this process's clock."""
        if isinstance(observed_at, bool) or not isinstance(observed_at, int | float):
            return
        age = self.wall_clock() - float(observed_at)
        if math.isfinite(age):
            self.latency[name].last_observed = self.clock() - max(0.0, age)

    def restore(self, snapshot: dict[str, dict[str, Any]]) -> int:
        """Load what `snapshot()` produced; unknown deployments are skipped. Returns how many."""
        loaded = 0
        for key, state in snapshot.items():
            kind, _, name = key.partition(":")
            if kind == "dep" and name in self.latency:
                self.latency[name].load_state(state.get("latency", {}))
                self._restore_age(name, state.get("observed_at"))
                if name in self.local:
                    self.local[name].load_state(state.get("local", {}))
                loaded += 1
            elif kind == "model" and isinstance(state.get("lengths"), dict):
                lengths = self.lengths.get(name) or self._new_lengths()
                self.lengths[name] = lengths
                lengths.load_state(state["lengths"])
                loaded += 1
        return loaded
