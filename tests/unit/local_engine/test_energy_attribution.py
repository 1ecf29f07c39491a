"""Splitting a meter's energy among requests: the rule, the read rate, and 'unavailable'."""

from __future__ import annotations

import pytest

from local_engine.energy import EnergyMeter
from local_engine.energy_attribution import EnergyAccount, EnergyAttributor, split_interval
from tests.support.energy import ManualCounter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def attributor(counter: ManualCounter, clock: Clock, interval_s: float = 0.05) -> EnergyAttributor:
    return EnergyAttributor(counter, min_interval_s=interval_s, clock=clock)


def test_split_by_work_and_equally_when_nobody_worked() -> None:
    a, b, c = EnergyAccount(work=3), EnergyAccount(work=1), EnergyAccount(work=0)
    split_interval(8.0, [a, b, c])
    assert (a.joules, b.joules, c.joules) == (6.0, 2.0, 0.0)
    assert a.work == b.work == c.work == 0.0
    split_interval(9.0, [a, b, c])  # nobody recorded work: equal shares
    assert (a.joules, b.joules, c.joules) == (9.0, 5.0, 3.0)


def test_a_lone_request_gets_the_energy_of_its_own_lifetime_only() -> None:
    counter, clock = ManualCounter(1000.0), Clock()
    att = attributor(counter, clock)
    counter.joules = 1500.0  # idle energy before the request: nobody's
    clock.now = 10.0
    acct = att.open()
    assert acct is not None
    att.add_work(acct, 12)
    counter.joules = 1540.0
    clock.now = 10.2
    assert att.close_one(acct) == pytest.approx(40.0)


def test_concurrent_requests_share_each_interval_by_their_work_in_it() -> None:
    counter, clock = ManualCounter(0.0), Clock()
    att = attributor(counter, clock, interval_s=0.1)
    a = att.open()
    # Interval 1: only `a` runs (prefill of 30 positions + 2 decode steps).
    att.add_work(a, 30)
    att.add_work(a, 1)
    att.add_work(a, 1)
    counter.joules, clock.now = 64.0, 0.1
    att.settle_if_due()
    # `b` joins: not idle, not due yet -> no read; it shares the next interval.
    reads = counter.reads
    b = att.open()
    assert counter.reads == reads
    att.add_work(a, 1)
    att.add_work(b, 3)  # b's prefill
    counter.joules, clock.now = 84.0, 0.15
    att.settle_if_due()  # 0.05 s since the last read < 0.1: not read yet
    assert counter.reads == reads
    att.add_work(a, 1)
    att.add_work(b, 1)
    counter.joules, clock.now = 94.0, 0.2
    att.settle_if_due()  # interval 2: 30 J, a did 2 units, b did 4
    [ja] = att.close([a])  # a finishes at once: interval 3 is empty of work -> equal shares
    assert ja == pytest.approx(64.0 + 10.0)
    att.add_work(b, 1)
    counter.joules, clock.now = 100.0, 0.3
    [jb] = att.close([b])
    assert jb == pytest.approx(20.0 + 6.0)
    assert ja + jb == pytest.approx(100.0)  # every joule while something ran, exactly once


def test_requests_finishing_together_cost_one_read() -> None:
    counter, clock = ManualCounter(0.0), Clock()
    att = attributor(counter, clock)
    accts = [att.open() for _ in range(4)]
    for i, acct in enumerate(accts):
        att.add_work(acct, i + 1)
    counter.joules = 100.0
    before = counter.reads
    got = att.close(accts)
    assert counter.reads == before + 1
    assert got == pytest.approx([10.0, 20.0, 30.0, 40.0])


def test_reads_are_rate_limited_while_requests_run() -> None:
    counter, clock = ManualCounter(0.0), Clock()
    att = attributor(counter, clock, interval_s=0.05)
    acct = att.open()
    before = counter.reads
    for step in range(120):  # 120 steps of 1 ms: 2 reads, not 120
        clock.now = (step + 1) * 0.001
        att.add_work(acct, 1)
        att.settle_if_due()
    assert counter.reads - before == 2
    counter.joules = 5.0
    assert att.close_one(acct) == pytest.approx(5.0)


def test_a_failed_read_makes_the_running_requests_unmeasured_not_guessed() -> None:
    counter, clock = ManualCounter(0.0), Clock()
    att = attributor(counter, clock)
    acct = att.open()
    att.add_work(acct, 5)
    counter.fail, clock.now = True, 1.0
    att.settle_if_due()
    counter.fail, counter.joules, clock.now = False, 50.0, 2.0
    assert att.close_one(acct) is None
    later = att.open()  # the engine is idle again: a fresh baseline, measured again
    att.add_work(later, 1)
    counter.joules = 58.0
    assert att.close_one(later) == pytest.approx(8.0)


def test_a_counter_going_backwards_never_gives_negative_energy() -> None:
    counter, clock = ManualCounter(500.0), Clock()
    att = attributor(counter, clock)
    acct = att.open()
    att.add_work(acct, 1)
    counter.joules = 10.0  # driver reset
    assert att.close_one(acct) == 0.0


def test_unavailable_meter_gives_none_and_is_never_read_again() -> None:
    counter = ManualCounter()
    counter.fail = True
    att = EnergyAttributor(counter)
    assert not att.available and "NVML" in att.reason
    acct = att.open()
    assert acct is None
    att.add_work(acct, 10)
    att.settle_if_due()
    assert att.close([acct, None]) == [None, None]
    assert counter.reads == 1


def test_on_this_cpu_host_the_real_meter_is_unavailable() -> None:
    meter = EnergyMeter()
    att = EnergyAttributor(meter)
    if meter.read().available:  # pragma: no cover - only on a machine with a readable GPU
        pytest.skip("NVML is readable here")
    assert not att.available
    assert att.open() is None
