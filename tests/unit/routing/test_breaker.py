"""CircuitBreaker: closed -> open -> half-open single probe -> closed (or open, longer)."""

from __future__ import annotations

from gateway.routing.breaker import BreakerState, CircuitBreaker


def test_opens_after_consecutive_failures_only() -> None:
    b = CircuitBreaker(failure_threshold=3, cooldown_s=10)
    b.record_failure(0)
    b.record_failure(0)
    b.record_success()  # resets the run
    b.record_failure(1)
    b.record_failure(1)
    assert b.state(1) is BreakerState.CLOSED
    b.record_failure(2)
    assert b.state(2) is BreakerState.OPEN
    assert not b.available(5)


def test_half_open_admits_a_single_probe_and_success_closes() -> None:
    b = CircuitBreaker(failure_threshold=1, cooldown_s=10)
    b.record_failure(0)
    assert b.state(9.9) is BreakerState.OPEN
    assert b.state(10) is BreakerState.HALF_OPEN
    assert b.try_acquire(10)
    assert not b.try_acquire(10.1)  # the probe slot is taken
    b.record_success()
    assert b.state(10.2) is BreakerState.CLOSED
    assert b.try_acquire(10.2) and b.try_acquire(10.2)


def test_failed_probe_reopens_with_doubled_cooldown() -> None:
    b = CircuitBreaker(failure_threshold=1, cooldown_s=10, max_cooldown_s=15)
    b.record_failure(0)
    assert b.try_acquire(10)
    b.record_failure(10)
    assert b.state(24.9) is BreakerState.OPEN  # doubled to 20 s, capped at 15
    assert b.state(25) is BreakerState.HALF_OPEN


def test_released_probe_frees_the_slot() -> None:
    b = CircuitBreaker(failure_threshold=1, cooldown_s=1, probe_timeout_s=100)
    b.record_failure(0)
    assert b.try_acquire(1)
    b.release()
    assert b.try_acquire(1.5)
    # a probe that never reports frees the slot after probe_timeout_s
    assert not b.try_acquire(50)
    assert b.try_acquire(102)


def test_gauge_values() -> None:
    assert [s.gauge for s in BreakerState] == [0, 2, 1]
