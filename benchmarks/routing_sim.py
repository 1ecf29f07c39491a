"""Routing simulation: replay real Azure LLM traces against drifting, failing deployments.

Compares the real router (gateway.routing: RoutePolicy, LatencyModel, CircuitBreaker, local
engine pricing; nothing copied) with two baselines: always the group's default deployment and
always the fastest (both fall back in a fixed order on failure). A discrete-event simulation:
nothing sleeps; the router's clock is the simulated clock, and a response's latency is fed
back only once the simulated clock has passed its completion. Routing decision time is real
wall-clock time of `Router.plan()`.

    python benchmarks/routing_sim.py /work/shared/data/traces/azure_llm_conv_2023.csv \
        [--speed 1.0] [--limit N] [--seed 7] [--verbose] [--breakdown]

Each deployment's latency drifts (a slow random walk plus incidents that slow it 2-4x for
minutes); each fails at a base rate and has outages. SLOs: 500 ms .. 20 s and none; streaming
requests are judged on TTFT, the rest on total time. "Attainable" = at least one deployment
that was up would have met the SLO for that request at that moment.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from gateway.routing.catalog import Catalog, Deployment
from gateway.routing.completion import CompletionEstimate
from gateway.routing.flight import Flight
from gateway.routing.local_load import EngineLoad
from gateway.routing.policy import PROBE_SLO_UNMET, Candidate
from gateway.routing.router import RoutePlan, Router, RouterTuning
from gateway.settings import DeploymentConfig

MODEL = "llama-3.3-70b"
SLO_CHOICES_MS: tuple[float | None, ...] = (500, 1000, 2000, 5000, 10000, 20000, None)
FAIL_DELAY_MS = {"connect": 30.0, "5xx": 400.0}
EPOCH_S = 60.0  # drift schedule granularity


@dataclass(frozen=True)
class Truth:
    """How a simulated deployment really behaves (the router only sees its config hints)."""

    ttft_ms: float
    prefill_ms_per_token: float
    ms_per_token: float
    error_rate: float
    local: bool = False


# Prices are list prices of Llama-3.3-70B-class offers (USD per million tokens).
CONFIGS = (
    DeploymentConfig(
        name="together",
        model=MODEL,
        input_cost_per_mtok=Decimal("0.88"),
        output_cost_per_mtok=Decimal("0.88"),
        ttft_ms=350,
        ms_per_token=14,
        default=True,
    ),
    DeploymentConfig(
        name="turbo",
        model=MODEL,
        input_cost_per_mtok=Decimal("2.20"),
        output_cost_per_mtok=Decimal("4.00"),
        ttft_ms=150,
        ms_per_token=3,
    ),
    DeploymentConfig(
        name="mid",
        model=MODEL,
        input_cost_per_mtok=Decimal("0.59"),
        output_cost_per_mtok=Decimal("0.79"),
        ttft_ms=300,
        ms_per_token=9,
    ),
    DeploymentConfig(
        name="budget",
        model=MODEL,
        input_cost_per_mtok=Decimal("0.23"),
        output_cost_per_mtok=Decimal("0.40"),
        ttft_ms=800,
        ms_per_token=30,
    ),
    DeploymentConfig(
        name="local-gpu",
        model=MODEL,
        input_cost_per_mtok=Decimal(0),
        output_cost_per_mtok=Decimal(0),
        ttft_ms=120,
        ms_per_token=11,
        hardware_usd_per_hour=Decimal("2.50"),
        max_concurrency=32,
    ),
)
TRUTH = {
    "together": Truth(320, 0.06, 14, 0.005),
    "turbo": Truth(140, 0.02, 3.2, 0.003),
    "mid": Truth(380, 0.05, 10, 0.01),
    "budget": Truth(900, 0.12, 28, 0.02),
    "local-gpu": Truth(90, 0.04, 0.0, 0.002, local=True),
}
FASTEST = "turbo"


def local_tokens_per_s(concurrency: int) -> float:
    """Per-sequence decode speed with speculative decoding: fast alone, slower when batched."""
    return 110.0 / (1.0 + 0.09 * (max(1, concurrency) - 1))


@dataclass
class World:
    """The drift and outage schedule, identical for every policy."""

    mult: dict[str, list[float]]
    down: dict[str, list[tuple[float, float]]]

    @classmethod
    def build(cls, names: list[str], duration_s: float, rng: random.Random) -> World:
        epochs = int(duration_s / EPOCH_S) + 2
        mult: dict[str, list[float]] = {}
        down: dict[str, list[tuple[float, float]]] = {}
        for name in names:
            level, series, incident = 0.0, [], 0
            for _ in range(epochs):
                level = min(math.log(2.0), max(math.log(0.8), level + rng.gauss(0, 0.08)))
                if incident == 0 and rng.random() < 0.04:
                    incident = rng.randint(2, 6)
                factor = rng.uniform(2.0, 4.0) if incident else 1.0
                incident = max(0, incident - 1)
                series.append(math.exp(level) * factor)
            mult[name] = series
            outages = []
            t = 0.0
            while t < duration_s:
                t += rng.expovariate(1 / 900.0)  # about one outage per 15 minutes
                outages.append((t, t + rng.uniform(20, 120)))
            down[name] = outages
        return cls(mult, down)

    def multiplier(self, name: str, t: float) -> float:
        series = self.mult[name]
        return series[min(len(series) - 1, int(t / EPOCH_S))]

    def is_down(self, name: str, t: float) -> bool:
        return any(a <= t < b for a, b in self.down[name])


@dataclass
class Request:
    t: float
    prompt: int
    completion: int
    stream: bool
    slo_ms: float | None
    max_tokens: int | None
    noise: dict[str, tuple[float, float, float]]  # per deployment: ttft, itl, failure draw


@dataclass
class Outcome:
    cost_usd: Decimal = Decimal(0)
    requests: int = 0
    failed: int = 0
    retries: int = 0
    slo_requests: int = 0
    slo_met: int = 0
    attainable: int = 0
    attainable_met: int = 0
    by_deployment: dict[str, int] = field(default_factory=dict)
    decision_ns: list[int] = field(default_factory=list)  # wall clock
    decision_cpu_ns: list[int] = field(default_factory=list)  # this thread's CPU time
    misses: Counter[str] = field(default_factory=Counter)


@dataclass
class Regret:
    """--breakdown: what the router paid over the cheapest deployment that was up and would
    have met the SLO (hindsight at arrival, in the router's own run), by the reason it did not
    pick that one. The router's plan for the request is read from `plan`."""

    plan: list[RoutePlan] = field(default_factory=list)
    usd: dict[str, float] = field(default_factory=dict)
    count: Counter[str] = field(default_factory=Counter)

    def add(self, reason: str, served: str, best: str, usd: float) -> None:
        for key in (reason, f"{reason}: {served} instead of {best}"):
            self.usd[key] = self.usd.get(key, 0.0) + usd
            self.count[key] += 1

    def report(self) -> None:
        total = sum(v for k, v in self.usd.items() if ":" not in k)
        print(f"regret against hindsight: ${total:.3f} over {self.count.total() // 2} requests")
        for key, usd in sorted(self.usd.items(), key=lambda kv: -kv[1])[:30]:
            print(f"  {key:<64} {self.count[key]:6d}  ${usd:.3f}")


Choose = Callable[["Request", float], list[tuple[str, Candidate | None]]]
# After a failed attempt: (names tried so far, ms elapsed since arrival) -> the new order
Replan = Callable[[list[str], float], list[tuple[str, Candidate | None]]]


class Sim:
    def __init__(self, world: World, requests: list[Request]) -> None:
        self.world = world
        self.requests = requests
        self.catalog = Catalog.build(CONFIGS)
        self.active: dict[str, list[float]] = {d.name: [] for d in CONFIGS}
        self.seq = 0
        self.clock = [0.0]  # the router's clock: simulated seconds
        self.regret: Regret | None = None

    def concurrency(self, name: str, t: float) -> int:
        heap = self.active[name]
        while heap and heap[0] <= t:
            heapq.heappop(heap)
        return len(heap)

    def latency(self, name: str, req: Request, t: float) -> tuple[float, float, float]:
        """True (ttft, total, local per-seq tokens/s) of `req` on `name` started at `t`."""
        truth = TRUTH[name]
        m = self.world.multiplier(name, t)
        n_ttft, n_itl, _ = req.noise[name]
        ttft = (truth.ttft_ms + truth.prefill_ms_per_token * req.prompt) * m * n_ttft
        tps = 0.0
        if truth.local:
            cfg = self.catalog.deployments[name].config
            running = self.concurrency(name, t)
            slots = cfg.max_concurrency or 8
            tps = local_tokens_per_s(min(running + 1, slots))
            itl = 1000.0 / tps * n_itl
            if running >= slots:  # queued (FIFO): starts when enough earlier requests end
                ends = sorted(self.active[name])
                ttft += max(0.0, ends[running - slots] - t) * 1000.0
        else:
            itl = truth.ms_per_token * m * n_itl
        return ttft, ttft + max(0, req.completion - 1) * itl, tps

    def fails(self, name: str, req: Request, t: float) -> bool:
        return self.world.is_down(name, t) or req.noise[name][2] < TRUTH[name].error_rate

    def cost(self, dep: Deployment, req: Request, total_ms: float, tps: float, t: float) -> Decimal:
        if not TRUTH[dep.name].local:
            return dep.cost_usd(req.prompt, req.completion)
        # the local engine's share of the hardware: its slot of the batch for its duration
        running = max(1, self.concurrency(dep.name, t))
        hw = dep.config.hardware_usd_per_hour or Decimal(0)
        return hw * Decimal(repr(total_ms / 3_600_000.0)) / Decimal(running)

    def run(self, choose: Choose, router: Router | None, replan: Replan | None = None) -> Outcome:
        out = Outcome()
        for names in self.active.values():
            names.clear()
        pending: list[tuple[float, int, Callable[[], None]]] = []
        clock = self.clock
        if router is not None:
            router.clock = lambda: clock[0]
        next_report = 0.0
        for req in self.requests:
            while pending and pending[0][0] <= req.t:
                clock[0], _, apply = heapq.heappop(pending)
                apply()
            clock[0] = req.t
            if router is not None and req.t >= next_report:
                self.report_load(router, req.t)
                next_report = req.t + 1.0
            t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            order = choose(req, req.t)
            out.decision_cpu_ns.append(time.thread_time_ns() - c0)
            out.decision_ns.append(time.perf_counter_ns() - t0)
            self.serve(req, order, router, out, pending, replan)
        return out

    def push(
        self,
        pending: list[tuple[float, int, Callable[[], None]]],
        at: float,
        apply: Callable[[], None],
    ) -> None:
        self.seq += 1
        heapq.heappush(pending, (at, self.seq, apply))

    def feed_back(
        self,
        pending: list[tuple[float, int, Callable[[], None]]],
        router: Router,
        flight: Flight,
        req: Request,
        start: float,
        ttft: float,
        total: float,
    ) -> None:
        """Schedule what the gateway would learn: the first chunk (streams), then the end."""
        if req.stream:
            self.push(pending, start + ttft / 1000.0, lambda: router.first_token(flight, ttft))

        def done() -> None:
            router.succeed(
                flight,
                completion_tokens=req.completion,
                total_ms=total,
                # as dispatch: an answer cut off by max_tokens says nothing about its length
                count_length=req.max_tokens is None or req.completion < req.max_tokens,
            )

        self.push(pending, start + total / 1000.0, done)

    def report_load(self, router: Router, t: float) -> None:
        for name, truth in TRUTH.items():
            if truth.local:
                running = self.concurrency(name, t)
                slots = self.catalog.deployments[name].config.max_concurrency or 8
                busy = min(running, slots)
                tps = local_tokens_per_s(busy) * busy if busy else 0.0
                slots = self.catalog.deployments[name].config.max_concurrency or 8
                load = EngineLoad(max(0, running - slots), min(running, slots), tps, t)
                router.report_engine_load(name, load)

    def serve(
        self,
        req: Request,
        order: list[tuple[str, Candidate | None]],
        router: Router | None,
        out: Outcome,
        pending: list[tuple[float, int, Callable[[], None]]],
        replan: Replan | None = None,
    ) -> None:
        out.requests += 1
        t = req.t
        delay = 0.0
        judged_ms: float | None = None
        served = "-"
        # what the best up deployment would have done at arrival (for "attainable")
        best = math.inf
        for name in self.active:
            if not self.fails(name, req, t):
                ttft, total, _ = self.latency(name, req, t)
                best = min(best, ttft if req.stream else total)
        hindsight = self.hindsight(req, t) if self.regret and router else None
        order = list(order)
        tried: list[str] = []
        attempt = -1
        while order:
            name, cand = order.pop(0)
            attempt += 1
            tried.append(name)
            if attempt:
                out.retries += 1
            start = t + delay / 1000.0
            flight = None
            if router is not None and cand is not None:
                self.clock[0] = start  # a retry starts after the failure it follows
                flight = router.start(
                    cand,
                    model=MODEL,
                    prompt_tokens=req.prompt,
                    stream=req.stream,
                    max_tokens=req.max_tokens,
                )
                if flight is None:
                    continue
            if self.fails(name, req, start):
                kind = "connect" if self.world.is_down(name, start) else "5xx"
                delay += FAIL_DELAY_MS[kind]
                if router is not None and flight is not None:
                    router.fail(flight)
                if replan is not None:
                    self.clock[0] = t + delay / 1000.0
                    order = replan(tried, delay)
                continue
            dep = self.catalog.deployments[name]
            ttft, total, tps = self.latency(name, req, start)
            heapq.heappush(self.active[name], start + total / 1000.0)
            paid = self.cost(dep, req, total, tps, start)
            out.cost_usd += paid
            if hindsight is not None and router is not None:
                self.attribute(router, req, name, float(paid), hindsight, attempt > 0)
            out.by_deployment[name] = out.by_deployment.get(name, 0) + 1
            judged_ms = delay + (ttft if req.stream else total)
            served = f"{name}" + (f" after {attempt} failure(s)" if attempt else "")
            if router is not None and flight is not None:
                self.feed_back(pending, router, flight, req, start, ttft, total)
            break
        if judged_ms is None:
            out.failed += 1
        if req.slo_ms is not None:
            out.slo_requests += 1
            met = judged_ms is not None and judged_ms <= req.slo_ms
            out.slo_met += met
            if best <= req.slo_ms:
                out.attainable += 1
                out.attainable_met += met
                if not met:
                    kind = "stream" if req.stream else "total"
                    cap = "max_tokens" if req.max_tokens else "learned-len"
                    out.misses[f"{kind} slo={req.slo_ms:.0f} {cap} served={served}"] += 1

    def hindsight(self, req: Request, t: float) -> tuple[float, str] | None:
        """The cheapest deployment up at `t` that would have met the SLO: (cost, name)."""
        best: tuple[float, str] | None = None
        for name in self.active:
            if self.fails(name, req, t):
                continue
            ttft, total, _ = self.latency(name, req, t)
            if req.slo_ms is not None and (ttft if req.stream else total) > req.slo_ms:
                continue
            dep = self.catalog.deployments[name]
            if TRUTH[name].local:  # as self.cost, counting this request in the batch
                hw = float(dep.config.hardware_usd_per_hour or 0)
                cost = hw * total / 3_600_000.0 / (self.concurrency(name, t) + 1)
            else:
                cost = float(dep.cost_usd(req.prompt, req.completion))
            best = min(best, (cost, name)) if best else (cost, name)
        return best

    def attribute(
        self,
        router: Router,
        req: Request,
        served: str,
        paid: float,
        hindsight: tuple[float, str],
        after_failure: bool,
    ) -> None:
        best_usd, best = hindsight
        if self.regret is None or paid <= best_usd:
            return
        plan = self.regret.plan[0]
        cand = next((c for c in plan.ranked if c.name == best), None)
        slo = req.slo_ms
        if after_failure:
            reason = "fallback after a failure"
        elif plan.reason == PROBE_SLO_UNMET:
            reason = "probe"
        elif slo is None:
            reason = "no SLO: cost estimate"
        elif cand is None:
            reason = "breaker open"
        elif cand.meets_slo:
            reason = "cost estimate"
        elif req.stream:
            tail = cand.latency.ttft_ms <= slo
            reason = "TTFT tail margin" if tail else "TTFT level (or queue) too high"
        else:
            exact = CompletionEstimate(req.completion, req.completion, "hindsight")
            _, known = router.predict(cand.deployment, req.prompt, exact, self.clock[0])
            if known.total_high_ms <= slo:
                reason = "answer length estimate"
            elif cand.latency.total_ms <= slo:
                reason = "total tail margin"
            else:
                reason = "total level too high"
        self.regret.add(reason, served, best, paid - best_usd)


# Caps real clients send: fixed per app, mostly far above the answer, sometimes below it.
CLIENT_CAPS = (256, 512, 1024, 1024, 2048, 4096)


def load_requests(
    paths: list[Path], speed: float, limit: int | None, seed: int, caps: str = "fitted"
) -> list[Request]:
    rng = random.Random(seed)
    rows: list[tuple[float, int, int]] = []
    for path in paths:
        with path.open() as f:
            for row in csv.DictReader(f):
                rows.append(
                    (
                        float(row["arrived_at"]) / speed,
                        int(row["num_prefill_tokens"]),
                        max(1, int(row["num_decode_tokens"])),
                    )
                )
    rows.sort()
    if limit:
        rows = rows[:limit]
    reqs = []
    for t, prompt, completion in rows:
        stream = rng.random() < 0.7
        max_tokens = None
        if rng.random() < (0.3 if stream else 0.6):
            if caps == "fitted":  # a cap just above the answer: it tells the router its length
                max_tokens = max(64, 1 << (completion - 1).bit_length())
            else:  # an app's fixed cap; an answer longer than it is cut off there
                max_tokens = rng.choice(CLIENT_CAPS)
                completion = min(completion, max_tokens)
        noise = {
            d.name: (rng.lognormvariate(0, 0.12), rng.lognormvariate(0, 0.08), rng.random())
            for d in CONFIGS
        }
        reqs.append(
            Request(t, prompt, completion, stream, rng.choice(SLO_CHOICES_MS), max_tokens, noise)
        )
    return reqs


def pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("traces", nargs="+", type=Path)
    ap.add_argument("--speed", type=float, default=1.0, help="clock scale (2 = twice as fast)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--verbose", action="store_true", help="show the router's SLO misses")
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="attribute the router's cost over hindsight's cheapest SLO-meeting pick, by reason",
    )
    ap.add_argument(
        "--no-replan",
        action="store_true",
        help="fall back in the first ranking's order (before: re-rank for the time left)",
    )
    ap.add_argument(
        "--caps",
        choices=("fitted", "client"),
        default="fitted",
        help="max_tokens sent: 'fitted' = the next power of two above the real answer (it tells "
        "the router the answer's length within 2x); 'client' = a fixed cap per app "
        f"{CLIENT_CAPS}, cutting longer answers",
    )
    ap.add_argument(
        "--price-on-max-tokens",
        action="store_true",
        help="price requests that send max_tokens on the whole cap (before: the learned share)",
    )
    ap.add_argument("--latency-quantile", type=float, default=RouterTuning().latency_quantile)
    ap.add_argument("--completion-quantile", type=float, default=RouterTuning().completion_quantile)
    ap.add_argument("--latency-alpha", type=float, default=RouterTuning().latency_alpha)
    ap.add_argument("--stale-after-s", type=float, default=RouterTuning().stale_after_s)
    ap.add_argument(
        "--fixed-smoothing",
        action="store_true",
        help="latency EWMAs at a fixed rate (before: the rate rises with a level shift)",
    )
    ap.add_argument(
        "--probe-after-s",
        type=float,
        default=RouterTuning().probe_after_s,
        help="when nothing is predicted to meet the SLO, try a deployment whose figures are this "
        "old (0: never; before: always the fastest)",
    )
    args = ap.parse_args()

    requests = load_requests(args.traces, args.speed, args.limit, args.seed, args.caps)
    duration = requests[-1].t - requests[0].t
    world = World.build([d.name for d in CONFIGS], duration + 600, random.Random(args.seed + 1))
    sim = Sim(world, requests)
    catalog = sim.catalog
    default = catalog.default_for(MODEL)
    assert default is not None
    names = [d.name for d in catalog.group(MODEL)]
    by_speed = sorted(names, key=lambda n: catalog.deployments[n].config.ms_per_token or 0)
    default_order: list[tuple[str, Candidate | None]] = [(default.name, None)] + [
        (n, None) for n in names if n != default.name
    ]
    fastest_order: list[tuple[str, Candidate | None]] = [(FASTEST, None)] + [
        (n, None) for n in by_speed if n != FASTEST
    ]

    tuning = RouterTuning(
        latency_quantile=args.latency_quantile,
        completion_quantile=args.completion_quantile,
        latency_alpha=args.latency_alpha,
        adaptive_smoothing=not args.fixed_smoothing,
        stale_after_s=args.stale_after_s,
        probe_after_s=args.probe_after_s,
        price_on_max_tokens=args.price_on_max_tokens,
    )
    router = Router(catalog, tuning=tuning)

    last_plan: list[RoutePlan] = []
    if args.breakdown:
        sim.regret = Regret(plan=last_plan)

    def routed(req: Request, _t: float) -> list[tuple[str, Candidate | None]]:
        plan = router.plan(
            MODEL,
            prompt_tokens=req.prompt,
            max_tokens=req.max_tokens,
            slo_ms=req.slo_ms,
            stream=req.stream,
        )
        last_plan[:] = [plan]
        return [(c.name, c) for c in plan.ranked]

    def rerouted(tried: list[str], elapsed_ms: float) -> list[tuple[str, Candidate | None]]:
        return [(c.name, c) for c in router.replan(last_plan[0], tried, elapsed_ms)]

    def oracle(req: Request, t: float) -> list[tuple[str, Candidate | None]]:
        """Perfect knowledge (actual latency, failures, tokens): a lower bound, not a policy."""
        rows = []
        for n in names:
            if sim.fails(n, req, t):
                continue
            ttft, total, tps = sim.latency(n, req, t)
            judged = ttft if req.stream else total
            ok = req.slo_ms is None or judged <= req.slo_ms
            cost = sim.cost(catalog.deployments[n], req, total, tps, t)
            rows.append((not ok, cost if ok else Decimal(0), judged, n))
        return [(row[3], None) for row in sorted(rows)] or default_order

    results = {
        "always-default": sim.run(lambda r, t: default_order, None),
        "always-fastest": sim.run(lambda r, t: fastest_order, None),
        "router": sim.run(routed, router, None if args.no_replan else rerouted),
        "oracle (bound)": sim.run(oracle, None),
    }
    base = results["always-default"].cost_usd
    print(
        f"traces: {', '.join(p.name for p in args.traces)}; {len(requests)} requests over "
        f"{duration / 60:.1f} simulated min (speed x{args.speed}); seed {args.seed}"
    )
    print(
        f"{'policy':<16}{'cost USD':>10}{'saving':>8}{'SLO met':>9}{'attain.':>9}"
        f"{'failed':>7}{'retries':>8}   decision us p50/p99 (wall | cpu)"
    )
    for name, o in results.items():
        met = 100.0 * o.slo_met / max(1, o.slo_requests)
        att = 100.0 * o.attainable_met / max(1, o.attainable)
        saving = 100.0 * float(1 - o.cost_usd / base)
        timing = ""
        if name == "router":
            timing = (
                f"   {pct(o.decision_ns, 0.5):.1f} / {pct(o.decision_ns, 0.99):.1f} | "
                f"{pct(o.decision_cpu_ns, 0.5):.1f} / {pct(o.decision_cpu_ns, 0.99):.1f}"
            )
        print(
            f"{name:<16}{float(o.cost_usd):>10.4f}{saving:>7.1f}%{met:>8.2f}%{att:>8.2f}%"
            f"{o.failed:>7}{o.retries:>8}{timing}"
        )
    r = results["router"]
    print(f"router traffic: {dict(sorted(r.by_deployment.items()))}")
    print(
        f"SLO requests {r.slo_requests}, attainable {r.attainable}; "
        f"decision time: {len(r.decision_ns)} calls of Router.plan(), wall clock and thread CPU"
    )
    if args.verbose:
        for key, count in r.misses.most_common(200):
            print(f"  miss x{count}: {key}")
    if sim.regret is not None:
        sim.regret.report()
    hw = sum((d.hardware_usd_per_hour or Decimal(0)) for d in CONFIGS)
    print(
        f"note: local-gpu is charged its share of ${hw}/h per request served; renting it for "
        f"the whole run would be ${float(hw) * duration / 3600:.2f}"
    )


if __name__ == "__main__":
    main()
