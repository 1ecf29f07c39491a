"""A local engine's one-time model load is not its latency, and learned figures keep their age
across a restart (so a deployment shunned before it stays stale, and drifts back to its prior)."""

from __future__ import annotations

from typing import Any

from gateway.routing.router import Router, RouterTuning


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def two(make_catalog: Any, dep_config: Any, mono: Clock, wall: Clock) -> Router:
    cat = make_catalog(
        dep_config("local", inp="0", out="0", ttft_ms=100, ms_per_token=20),
        dep_config("cloud", inp="5", out="15", ttft_ms=300, ms_per_token=10),
    )
    return Router(cat, clock=mono, wall_clock=wall, tuning=RouterTuning())


def serve_slow(router: Router, name: str, *, learn: bool = True) -> None:
    dep = router.catalog.deployments[name]
    cand = router.plan("llama", prompt_tokens=40, deployments=[dep]).ranked[0]
    flight = router.start(cand, model="llama", prompt_tokens=40, stream=True)
    assert flight is not None
    flight.learn = learn
    router.first_token(flight, 5500.0)  # the model load
    router.succeed(flight, completion_tokens=20, total_ms=6000.0)


def local_chosen(router: Router) -> bool:
    plan = router.plan("llama", prompt_tokens=40, max_tokens=20, slo_ms=3000)
    return plan.chosen is not None and plan.chosen.name == "local"


def test_a_flight_that_waited_for_a_model_load_teaches_no_latency(
    make_catalog: Any, dep_config: Any
) -> None:
    router = two(make_catalog, dep_config, Clock(100.0), Clock(1e9))
    serve_slow(router, "local", learn=False)
    model = router.latency["local"]
    assert model.samples == 0 and model.last_observed is None
    assert router.breakers["local"].consecutive_failures == 0
    assert router.in_flight["local"] == 0 and not router.awaiting_first["local"]
    assert local_chosen(router)


def test_restored_figures_keep_their_age_and_go_stale(make_catalog: Any, dep_config: Any) -> None:
    mono, wall = Clock(100.0), Clock(1_000_000.0)
    before = two(make_catalog, dep_config, mono, wall)
    for _ in range(3):
        serve_slow(before, "local")
    assert not local_chosen(before)  # learned slow: the SLO goes to the cloud
    snapshot = before.snapshot()

    # a restart ten minutes later: a new monotonic epoch, the wall clock moved on
    after = two(make_catalog, dep_config, Clock(5.0), Clock(1_000_600.0))
    after.restore(snapshot)
    last = after.latency["local"].last_observed
    assert last is not None and abs((5.0 - last) - 600.0) < 1e-6
    assert local_chosen(after)  # stale for 10 min: drifted back to its prior


def test_restore_without_an_age_stays_as_before(make_catalog: Any, dep_config: Any) -> None:
    before = two(make_catalog, dep_config, Clock(100.0), Clock(1_000_000.0))
    serve_slow(before, "local")
    snapshot = before.snapshot()
    snapshot["dep:local"].pop("observed_at", None)  # a row written by an older version
    after = two(make_catalog, dep_config, Clock(5.0), Clock(1_000_600.0))
    after.restore(snapshot)
    assert after.latency["local"].last_observed is None
