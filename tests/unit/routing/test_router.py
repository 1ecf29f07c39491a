"""Router: pricing + prediction per candidate, breakers, auto model, feedback, snapshots."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from gateway.routing.catalog import AUTO_MODEL
from gateway.routing.local_load import EngineLoad
from gateway.routing.router import Router, RouterTuning


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def serve(
    router: Router,
    name: str,
    *,
    prompt: int,
    completion: int,
    total_ms: float,
    ttft_ms: float | None = None,
) -> None:
    """One successful attempt on `name`, fed back through the Flight API."""
    plan = router.plan(
        "llama", prompt_tokens=prompt, deployments=[router.catalog.deployments[name]]
    )
    flight = router.start(plan.ranked[0], model="llama", prompt_tokens=prompt, stream=bool(ttft_ms))
    assert flight is not None
    if ttft_ms is not None:
        router.first_token(flight, ttft_ms)
    router.succeed(flight, completion_tokens=completion, total_ms=total_ms)


def three(make_catalog: Any, dep_config: Any) -> tuple[Router, Clock]:
    cat = make_catalog(
        dep_config("premium", inp="5", out="15", ttft_ms=100, ms_per_token=5, default=True),
        dep_config("cheap", inp="0.5", out="1", ttft_ms=800, ms_per_token=30),
        dep_config("mid", inp="1", out="3", ttft_ms=300, ms_per_token=12),
    )
    clock = Clock()
    return Router(cat, clock=clock, tuning=RouterTuning(failure_threshold=2, cooldown_s=5)), clock


def test_plan_prices_and_picks_cheapest_meeting_slo(make_catalog: Any, dep_config: Any) -> None:
    router, _ = three(make_catalog, dep_config)
    plan = router.plan("llama", prompt_tokens=1000, max_tokens=100, slo_ms=None)
    assert plan.chosen is not None and plan.chosen.name == "cheap"
    assert plan.chosen.cost_usd == Decimal("0.0006")  # 1000 x 0.5/M + 100 x 1/M
    assert plan.default is not None and plan.default.name == "premium"
    assert plan.default_cost_usd(1000, 100) == Decimal("0.0065")
    # stream, SLO 600 ms on TTFT: cheap (800 ms) misses; mid (300 + prefill) meets
    plan = router.plan("llama", prompt_tokens=1000, max_tokens=100, slo_ms=600, stream=True)
    assert [c.name for c in plan.ranked] == ["mid", "premium", "cheap"]
    assert plan.reason == "cheapest-within-slo"
    # non-stream, 100 tokens: only premium (~100 + 500 ms, with spread) fits 1000 ms
    plan = router.plan("llama", prompt_tokens=1000, max_tokens=100, slo_ms=1000)
    assert plan.chosen is not None and plan.chosen.name == "premium"
    plan = router.plan("llama", prompt_tokens=1000, max_tokens=100, slo_ms=50)
    assert plan.reason == "fastest-slo-unmet"
    assert plan.chosen is not None and plan.chosen.name == "premium"


def test_switches_when_the_cheap_one_slows_down(make_catalog: Any, dep_config: Any) -> None:
    router, _ = three(make_catalog, dep_config)
    cheap_first = router.plan("llama", prompt_tokens=100, max_tokens=10, slo_ms=2000, stream=True)
    assert cheap_first.chosen is not None and cheap_first.chosen.name == "cheap"
    for _ in range(8):
        serve(router, "cheap", prompt=100, completion=10, total_ms=4000, ttft_ms=3000)
    plan = router.plan("llama", prompt_tokens=100, max_tokens=10, slo_ms=2000, stream=True)
    assert plan.chosen is not None and plan.chosen.name == "mid"


def test_stale_slow_deployment_drifts_back_to_its_prior(make_catalog: Any, dep_config: Any) -> None:
    router, clock = three(make_catalog, dep_config)
    for _ in range(8):
        serve(router, "cheap", prompt=100, completion=10, total_ms=4000, ttft_ms=3000)
    clock.now += 1000  # long unobserved: tried again
    plan = router.plan("llama", prompt_tokens=100, max_tokens=10, slo_ms=2000, stream=True)
    assert plan.chosen is not None and plan.chosen.name == "cheap"


def test_open_breaker_removes_candidate_until_half_open(make_catalog: Any, dep_config: Any) -> None:
    router, clock = three(make_catalog, dep_config)
    cheap = router.catalog.deployments["cheap"]
    for _ in range(2):
        cand = router.plan("llama", prompt_tokens=10, deployments=[cheap]).ranked[0]
        flight = router.start(cand, model="llama", prompt_tokens=10, stream=False)
        assert flight is not None
        router.fail(flight)
        router.fail(flight)  # a second verdict on the same flight is ignored
    plan = router.plan("llama", prompt_tokens=10, max_tokens=10)
    assert "cheap" not in [c.name for c in plan.ranked]
    assert router.breaker_state("cheap").value == "open"
    clock.now += 5
    assert router.breaker_state("cheap").value == "half_open"
    cand = router.plan("llama", prompt_tokens=10, deployments=[cheap]).ranked[0]
    probe = router.start(cand, model="llama", prompt_tokens=10, stream=False)
    assert probe is not None
    assert router.start(cand, model="llama", prompt_tokens=10, stream=False) is None
    assert router.plan("llama", prompt_tokens=10, deployments=[cheap]).ranked == []
    router.succeed(probe, completion_tokens=5, total_ms=900)
    assert router.breaker_state("cheap").value == "closed"
    assert router.in_flight["cheap"] == 0


def test_overdue_flight_raises_the_prediction_before_it_ends(
    make_catalog: Any, dep_config: Any
) -> None:
    router, clock = three(make_catalog, dep_config)
    plan = router.plan("llama", prompt_tokens=100, max_tokens=10, slo_ms=1200, stream=True)
    assert plan.chosen is not None and plan.chosen.name == "cheap"
    flight = router.start(plan.chosen, model="llama", prompt_tokens=100, stream=True)
    assert flight is not None
    clock.now += 3.0  # no first token after 3 s, predicted ~0.8 s
    plan = router.plan("llama", prompt_tokens=100, max_tokens=10, slo_ms=1200, stream=True)
    assert plan.chosen is not None and plan.chosen.name == "mid"
    cheap = next(c for c in plan.ranked if c.name == "cheap")
    assert cheap.latency.ttft_high_ms >= 3000
    router.abandon(flight)
    plan = router.plan("llama", prompt_tokens=100, max_tokens=10, slo_ms=1200, stream=True)
    assert plan.chosen is not None and plan.chosen.name == "cheap"


def test_auto_model_spans_the_acceptable_models(make_catalog: Any, dep_config: Any) -> None:
    cat = make_catalog(
        dep_config("big-a", model="big", inp="3", out="9", default=True),
        dep_config("small-a", model="small", inp="0.1", out="0.2", default=True),
        dep_config("other", model="other", inp="0", out="0"),
    )
    router = Router(cat, auto_models=("big",))
    assert [d.name for d in router.candidates(AUTO_MODEL)] == ["big-a"]
    plan = router.plan(AUTO_MODEL, prompt_tokens=10, auto_models=["big", "small"])
    assert [c.name for c in plan.ranked] == ["small-a", "big-a"]
    assert plan.default is not None and plan.default.name == "big-a"
    assert router.plan(AUTO_MODEL, prompt_tokens=10, auto_models=["nope"]).ranked == []


def test_local_engine_cost_tracks_load(make_catalog: Any, dep_config: Any) -> None:
    cat = make_catalog(
        dep_config("cloud", inp="0.5", out="1.5", ttft_ms=200, ms_per_token=10, default=True),
        dep_config(
            "gpu",
            inp="0",
            out="0",
            ttft_ms=50,
            ms_per_token=10,
            hardware_usd_per_hour=Decimal("2.00"),
            max_concurrency=16,
        ),
    )
    clock = Clock()
    router = Router(cat, clock=clock)
    # measured: 100 tok/s alone, 60 tok/s per sequence at 16 concurrent
    router.report_engine_load("gpu", EngineLoad(0, 16, 16 * 60.0, observed_at=clock.now))
    router.report_engine_load("gpu", EngineLoad(0, 0, 0.0, observed_at=clock.now))
    idle = router.plan("llama", prompt_tokens=100, max_tokens=100)
    gpu_idle = next(c for c in idle.ranked if c.name == "gpu")
    # alone: $2/h / 100 tok/s = $5.56/Mtok out -> cloud ($1.5/Mtok) is cheaper
    assert idle.chosen is not None and idle.chosen.name == "cloud"
    router.report_engine_load("gpu", EngineLoad(0, 15, 15 * 60.0, observed_at=clock.now))
    busy = router.plan("llama", prompt_tokens=100, max_tokens=100)
    gpu_busy = next(c for c in busy.ranked if c.name == "gpu")
    assert gpu_busy.cost_usd < gpu_idle.cost_usd
    assert busy.chosen is not None and busy.chosen.name == "gpu"  # $0.58/Mtok when batched
    assert gpu_busy.latency.total_ms > gpu_idle.latency.total_ms


def test_completion_length_is_learned_per_model(make_catalog: Any, dep_config: Any) -> None:
    router, _ = three(make_catalog, dep_config)
    assert router.plan("llama", prompt_tokens=10).completion.source == "default"
    for _ in range(20):
        serve(router, "mid", prompt=10, completion=40, total_ms=800, ttft_ms=300)
    est = router.plan("llama", prompt_tokens=10).completion
    assert est.source == "learned" and 38 <= est.expected <= 42


def test_snapshot_restore_makes_a_restart_warm(make_catalog: Any, dep_config: Any) -> None:
    router, _ = three(make_catalog, dep_config)
    for _ in range(30):
        serve(router, "cheap", prompt=100, completion=50, total_ms=300, ttft_ms=50)
    fresh, _ = three(make_catalog, dep_config)
    assert fresh.restore(router.snapshot()) == 4  # 3 deployments + 1 model
    a = router.plan("llama", prompt_tokens=100, slo_ms=400)
    b = fresh.plan("llama", prompt_tokens=100, slo_ms=400)
    assert [(c.name, c.latency) for c in a.ranked] == [(c.name, c.latency) for c in b.ranked]
    assert fresh.restore({"dep:gone": {"latency": {}}, "junk": {}}) == 0


def test_engine_report_is_raised_to_own_in_flight(make_catalog: Any, dep_config: Any) -> None:
    cat = make_catalog(
        dep_config(
            "gpu",
            inp="0",
            out="0",
            ttft_ms=50,
            ms_per_token=10,
            hardware_usd_per_hour=Decimal("2.00"),
            max_concurrency=2,
        ),
    )
    clock = Clock()
    router = Router(cat, clock=clock)
    router.report_engine_load("gpu", EngineLoad(0, 1, 50.0, observed_at=clock.now))
    assert router.current_load("gpu", clock.now).running == 1
    cand = router.plan("llama", prompt_tokens=10).ranked[0]
    flights = [router.start(cand, model="llama", prompt_tokens=10, stream=True) for _ in range(3)]
    load = router.current_load("gpu", clock.now)  # a burst since the last report
    assert (load.running, load.queue_depth) == (2, 1)
    clock.now += 60  # a stale report is ignored: the gateway's own count stands
    assert router.current_load("gpu", clock.now).running == 3
    for f in flights:
        assert f is not None
        router.abandon(f)


def test_queued_local_flight_does_not_teach_engine_ttft(make_catalog: Any, dep_config: Any) -> None:
    cat = make_catalog(
        dep_config(
            "gpu",
            inp="0",
            out="0",
            ttft_ms=50,
            ms_per_token=10,
            hardware_usd_per_hour=Decimal("2.00"),
            max_concurrency=1,
        ),
    )
    router = Router(cat, clock=Clock())
    router.report_engine_load("gpu", EngineLoad(2, 1, 100.0, observed_at=router.clock()))
    cand = router.plan("llama", prompt_tokens=10, max_tokens=10).ranked[0]
    assert cand.latency.queue_wait_ms > 0
    before = router.latency["gpu"].ttft_coefficients()
    flight = router.start(cand, model="llama", prompt_tokens=10, stream=True)
    assert flight is not None
    router.first_token(flight, 5000.0)  # mostly time in the queue
    router.succeed(flight, completion_tokens=10, total_ms=5100.0)
    assert router.latency["gpu"].ttft_coefficients() == before
    # ...but it teaches the queue: the next queued request's TTFT tail is wider
    again = router.plan("llama", prompt_tokens=10, max_tokens=10).ranked[0]
    assert again.latency.ttft_high_ms > cand.latency.ttft_high_ms


def test_effective_price_only_for_hardware_priced(make_catalog: Any, dep_config: Any) -> None:
    cat = make_catalog(
        dep_config("cloud", default=True),
        dep_config("gpu", inp="0", out="0", ms_per_token=10, hardware_usd_per_hour=Decimal("3.60")),
    )
    router = Router(cat)
    assert router.effective_price("cloud") is None
    price = router.effective_price("gpu")
    assert price is not None
    assert price.output_per_mtok == Decimal("10.0")  # $0.001/s over 100 tok/s, idle


def test_replan_after_a_failure_ranks_for_the_time_left(make_catalog: Any, dep_config: Any) -> None:
    router, clock = three(make_catalog, dep_config)
    plan = router.plan("llama", prompt_tokens=1000, max_tokens=100, slo_ms=600, stream=True)
    assert [c.name for c in plan.ranked] == ["mid", "premium", "cheap"]
    first = router.start(plan.ranked[0], model="llama", prompt_tokens=1000, stream=True)
    assert first is not None
    clock.now += 0.05
    router.fail(first)
    # 50 ms gone: premium (~100 ms TTFT) and nothing else fits the 550 ms left, mid is tried
    assert [c.name for c in router.replan(plan, ["mid"], 50.0)] == ["premium", "cheap"]
    # with no SLO the rest stay cheapest first
    free = router.plan("llama", prompt_tokens=1000, max_tokens=100, slo_ms=None)
    assert [c.name for c in router.replan(free, ["cheap"], 400.0)] == ["mid", "premium"]
    # the SLO is already spent: fastest first (ranked by expectation, none meets it)
    late = router.replan(plan, ["mid"], 700.0)
    assert [c.name for c in late] == ["premium", "cheap"]
    assert not any(c.meets_slo for c in late)
    # a deployment whose breaker opened meanwhile is not offered again
    for _ in range(2):
        f = router.start(plan.ranked[1], model="llama", prompt_tokens=1000, stream=True)
        assert f is not None
        router.fail(f)
    assert [c.name for c in router.replan(plan, ["mid"], 50.0)] == ["cheap"]


def test_replan_prefers_the_cheapest_that_still_fits(make_catalog: Any, dep_config: Any) -> None:
    """Not just the next of the first ranking: a cheaper survivor that fits beats it."""
    cat = make_catalog(
        dep_config("premium", inp="5", out="15", ttft_ms=100, ms_per_token=5, default=True),
        dep_config("mid", inp="1", out="3", ttft_ms=300, ms_per_token=12),
        dep_config("low", inp="0.8", out="2", ttft_ms=350, ms_per_token=12),
        dep_config("cheap", inp="0.5", out="1", ttft_ms=900, ms_per_token=30),
    )
    router = Router(cat, clock=Clock())
    plan = router.plan("llama", prompt_tokens=200, max_tokens=50, slo_ms=1500, stream=True)
    assert [c.name for c in plan.ranked][:2] == ["cheap", "low"]
    # cheap failed late: 1,000 ms gone, 500 left: low (~350 ms, tail ~440) still fits
    assert router.replan(plan, ["cheap"], 1000.0)[0].name == "low"
    # 1,300 ms gone, 200 left: only premium can still make it
    assert router.replan(plan, ["cheap"], 1300.0)[0].name == "premium"


def slow_down(router: Router, name: str, ttft_ms: float) -> None:
    for _ in range(8):
        serve(router, name, prompt=100, completion=10, total_ms=ttft_ms + 100, ttft_ms=ttft_ms)


def test_nothing_meets_the_slo_a_stale_deployment_is_probed(
    make_catalog: Any, dep_config: Any
) -> None:
    """An incident made every deployment look slow; one no request has gone to since may have
    recovered, and the request would miss on the fastest anyway: it is tried."""
    router, clock = three(make_catalog, dep_config)
    slow_down(router, "premium", 2000)
    slow_down(router, "mid", 1500)
    slow_down(router, "cheap", 3000)
    plan = router.plan("llama", prompt_tokens=100, max_tokens=10, slo_ms=500, stream=True)
    assert plan.reason == "fastest-slo-unmet"  # figures still fresh: the fastest
    assert plan.chosen is not None and plan.chosen.name == "mid"

    clock.now += 15  # past probe_after_s (10), well before stale_after_s (60)
    plan = router.plan("llama", prompt_tokens=100, max_tokens=10, slo_ms=500, stream=True)
    assert plan.reason == "probe-slo-unmet"
    # premium: its config (100 ms) meets 500 ms; cheap's (800 ms) could not, so never probed
    assert [c.name for c in plan.ranked] == ["premium", "mid", "cheap"]
    assert plan.chosen is not None and plan.chosen.meets_slo is False

    # one probe at a time: with a request in flight there, the fastest serves
    flight = router.start(plan.ranked[0], model="llama", prompt_tokens=100, stream=True)
    assert flight is not None
    plan = router.plan("llama", prompt_tokens=100, max_tokens=10, slo_ms=500, stream=True)
    assert plan.reason == "fastest-slo-unmet" and plan.chosen is not None
    assert plan.chosen.name == "mid"
    router.first_token(flight, 150)  # it has recovered: the next requests go there on merit
    router.succeed(flight, completion_tokens=10, total_ms=300)
    for _ in range(20):
        serve(router, "premium", prompt=100, completion=10, total_ms=300, ttft_ms=150)
    plan = router.plan("llama", prompt_tokens=100, max_tokens=10, slo_ms=500, stream=True)
    # the fastest again on its fresh figures (its tail still remembers the incident)
    assert plan.chosen is not None and plan.chosen.name == "premium"
    assert plan.chosen.latency.ttft_ms < 500


def test_no_probe_when_the_fastest_may_well_make_it(make_catalog: Any, dep_config: Any) -> None:
    """Only its tail misses: the fastest's expectation meets the SLO, so no request is spent."""
    router, clock = three(make_catalog, dep_config)
    slow_down(router, "premium", 2000)
    slow_down(router, "mid", 1500)
    slow_down(router, "cheap", 3000)
    clock.now += 15
    mid = router.plan(
        "llama", prompt_tokens=100, deployments=[router.catalog.deployments["mid"]], stream=True
    ).ranked[0]
    slo = (mid.latency.ttft_ms + mid.latency.ttft_high_ms) / 2
    assert mid.latency.ttft_ms < slo < mid.latency.ttft_high_ms
    plan = router.plan("llama", prompt_tokens=100, max_tokens=10, slo_ms=slo, stream=True)
    assert plan.reason == "fastest-slo-unmet"
    assert plan.chosen is not None and plan.chosen.name == "mid"
    # and with probing off, the fastest serves whatever the figures' age
    router.tuning = RouterTuning(failure_threshold=2, cooldown_s=5, probe_after_s=0)
    plan = router.plan("llama", prompt_tokens=100, max_tokens=10, slo_ms=500, stream=True)
    assert plan.reason == "fastest-slo-unmet"


def test_nothing_meets_the_slo_an_open_breaker_probes_early(
    make_catalog: Any, dep_config: Any
) -> None:
    """A dead deployment's breaker waits out a doubled cool-down; when every open one is
    predicted to miss anyway, its half-open probe is brought forward (after the base one)."""
    router, clock = three(make_catalog, dep_config)
    slow_down(router, "mid", 1500)
    premium = router.catalog.deployments["premium"]

    def attempt_fails() -> None:
        cand = router.plan("llama", prompt_tokens=10, deployments=[premium]).ranked[0]
        flight = router.start(cand, model="llama", prompt_tokens=10, stream=True)
        assert flight is not None
        router.fail(flight)

    attempt_fails()
    attempt_fails()  # open, cool-down 5 s
    clock.now += 5
    attempt_fails()  # the half-open probe fails: open again, cool-down 10 s
    slow_down(router, "mid", 1500)  # keep mid's figures fresh (no stale probe)
    clock.now += 2  # inside the base cool-down: nothing to bring forward
    plan = router.plan("llama", prompt_tokens=100, max_tokens=10, slo_ms=500, stream=True)
    assert "premium" not in [c.name for c in plan.ranked]
    assert plan.reason == "fastest-slo-unmet"
    clock.now += 4  # 6 s: past the base 5 s, 4 s before the breaker would half-open itself
    assert router.breaker_state("premium").value == "open"
    plan = router.plan("llama", prompt_tokens=100, max_tokens=10, slo_ms=2000, stream=True)
    assert "premium" not in [c.name for c in plan.ranked]  # mid meets 2 s: no probe
    plan = router.plan("llama", prompt_tokens=100, max_tokens=10, slo_ms=500, stream=True)
    assert plan.reason == "probe-slo-unmet"
    assert plan.chosen is not None and plan.chosen.name == "premium"
    probe = router.start(plan.chosen, model="llama", prompt_tokens=100, stream=True)
    assert probe is not None  # it holds the single half-open probe
    assert router.start(plan.chosen, model="llama", prompt_tokens=100, stream=True) is None
    router.first_token(probe, 120)
    router.succeed(probe, completion_tokens=10, total_ms=200)
    assert router.breaker_state("premium").value == "closed"


def test_probe_after_s_comes_from_the_routing_config() -> None:
    from pydantic import ValidationError

    from gateway.settings import FileConfig, RoutingConfig

    assert RouterTuning.from_config(RoutingConfig()).probe_after_s == RouterTuning().probe_after_s
    parsed = FileConfig.model_validate({"routing": {"probe_after_s": 0}})
    assert RouterTuning.from_config(parsed.routing).probe_after_s == 0  # probing off
    with pytest.raises(ValidationError):
        RoutingConfig(probe_after_s=-1)


def test_auto_baseline_comes_from_the_tenants_own_candidates(
    make_catalog: Any, dep_config: Any
) -> None:
    """The route stage plans `thriftgate/auto` on the tenant's candidates (its `auto_models`
    flag, narrowed by its allowed models), not the file's list: the baseline a miss's savings
    are priced at must be a deployment of those, like a cache hit's (account.baseline_of), not
    the default of a model the tenant cannot use (that claimed 28x the cost as saved)."""
    cat = make_catalog(
        dep_config("big-a", model="big", inp="3", out="9", default=True),
        dep_config("small-b", model="small", inp="0.2", out="0.4"),
        dep_config("small-a", model="small", inp="0.1", out="0.2", default=True),
    )
    router = Router(cat, auto_models=("big", "small"))
    tenant_candidates = list(cat.group("small"))
    plan = router.plan(AUTO_MODEL, prompt_tokens=10, deployments=tenant_candidates)
    assert [c.name for c in plan.ranked] == ["small-a", "small-b"]
    assert plan.default is not None and plan.default.name == "small-a"
    # the file's list still decides without a tenant's candidates
    assert router.plan(AUTO_MODEL, prompt_tokens=10).default.name == "big-a"  # type: ignore[union-attr]


def test_retry_after_counts_the_doubled_cool_down(make_catalog: Any, dep_config: Any) -> None:
    """Every breaker shut: the 503's Retry-After said the base cool-down (5 s) while the
    breakers, doubled by failed probes, stayed shut for 10 and 20 s; a client that obeyed it
    was refused again and again. It is the time until the first breaker lets one through."""
    router, clock = three(make_catalog, dep_config)
    deps = list(router.catalog.deployments.values())

    def fail(name: str) -> None:
        cand = router.plan(
            "llama", prompt_tokens=10, deployments=[router.catalog.deployments[name]]
        )
        flight = router.start(cand.ranked[0], model="llama", prompt_tokens=10, stream=False)
        assert flight is not None
        router.fail(flight)

    for name in ("premium", "cheap", "mid"):
        fail(name)
        fail(name)  # threshold 2: open, cool-down 5 s
    assert router.plan("llama", prompt_tokens=10).ranked == []
    assert router.retry_after_s(deps) == 5
    clock.now += 5.0
    for name in ("premium", "cheap", "mid"):
        fail(name)  # each half-open probe fails: the cool-down doubles to 10 s
    assert router.plan("llama", prompt_tokens=10).ranked == []
    assert router.retry_after_s(deps) == 10
    clock.now += 7.5
    assert router.retry_after_s(deps) == 3  # 2.5 s left, in whole seconds
    clock.now += 2.5
    assert router.retry_after_s(deps) == 1 and router.plan("llama", prompt_tokens=10).ranked


def test_a_deployment_listed_twice_is_one_candidate(make_catalog: Any, dep_config: Any) -> None:
    """A tenant's `auto_models: [m, m]` lists m's deployments twice: the plan ranked the one
    deployment twice and said `cheapest-no-slo` for what was its only candidate."""
    cat = make_catalog(dep_config("solo", model="m", default=True))
    router = Router(cat)
    twice = [*cat.group("m"), *cat.group("m")]
    plan = router.plan(AUTO_MODEL, prompt_tokens=10, deployments=twice)
    assert [c.name for c in plan.ranked] == ["solo"]
    assert plan.reason == "only-candidate"


def test_retry_after_of_an_endless_cool_down_is_a_number(make_catalog: Any) -> None:
    """`cooldown_s: .inf` in YAML passes the config's check (> 0); int(inf) made the
    all-breakers-open 503 a 500."""
    from gateway.settings import DeploymentConfig

    router = Router(
        make_catalog(DeploymentConfig(name="x", model="llama")),
        tuning=RouterTuning(failure_threshold=1, cooldown_s=float("inf")),
    )
    dep = router.catalog.deployments["x"]
    flight = router.start(
        router.plan("llama", prompt_tokens=1).ranked[0],
        model="llama",
        prompt_tokens=1,
        stream=False,
    )
    assert flight is not None
    router.fail(flight)
    assert router.retry_after_s([dep]) == 86_400
