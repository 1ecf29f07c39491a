"""Energy per request: a meter's energy between two reads, split among the requests that ran.

An *interval* is the time between two reads of the meter (NVML's total-energy counter). Its
energy goes to the requests active in it, in proportion to the *work* each recorded in it:

- the transformers engine records the token positions the model computed for a request: its
  prompt at the step that prefilled it, then 1 + its drafts at each decode step it took part in;
- the vLLM backend sees only what vLLM streams: one unit per streamed chunk (vLLM sends one
  per engine step per request), and a non-streamed request's completion tokens when it returns;
- if no active request recorded work in an interval (a lone request still in prefill), its
  energy is split equally among the active requests;
- energy while no request is active (idle) is nobody's: it is only in `/metrics`' total.

The meter is read at most every `min_interval_s` while requests run (`settle_if_due`, once per
engine step), when a request starts on an idle engine (so idle energy is not charged to it),
and when requests finish (one read for every request finishing at the same step).

When the meter is unavailable (no `nvidia-ml-py`, a CPU host) `open()` returns None and every
request's energy is None; when a read fails, the requests active then get None. Never a guess.
Assumes the meter sees only this engine's GPUs: two engines on one GPU would each charge the
whole GPU's energy to their own requests.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from local_engine.energy import EnergyMeter, EnergyReading

DEFAULT_MIN_INTERVAL_S = 0.05


class EnergySource(Protocol):
    """A cumulative energy counter (`EnergyMeter`; tests use a double of the hardware counter)."""

    def read(self) -> EnergyReading: ...


@dataclass(eq=False, slots=True)
class EnergyAccount:
    """One request's running total; `work` is what it did in the interval not yet settled."""

    joules: float = 0.0
    work: float = 0.0
    failed: bool = False


def split_interval(joules: float, accounts: Iterable[EnergyAccount]) -> None:
    """Add an interval's energy to the accounts by their work in it (equally if none worked),
    and start their next interval at zero work."""
    active = list(accounts)
    if not active:
        return
    total = sum(a.work for a in active)
    for a in active:
        a.joules += joules * (a.work / total if total > 0 else 1.0 / len(active))
        a.work = 0.0


class EnergyAttributor:
    """Thread-safe: the transformers engine calls it from its decode thread, vLLM's from the
    event loop. All methods are no-ops returning None when the meter cannot be read."""

    def __init__(
        self,
        meter: EnergySource,
        *,
        min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.meter = meter
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._active: set[EnergyAccount] = set()
        first = meter.read()
        self.available = first.available and first.joules is not None
        self.reason = first.reason
        self._last_joules: float | None = first.joules if self.available else None
        self._last_read = clock()

    def open(self) -> EnergyAccount | None:
        """Start charging a new request; None when energy is not measured here."""
        if not self.available:
            return None
        with self._lock:
            if not self._active or self._due():
                self._settle()
            account = EnergyAccount()
            self._active.add(account)
            return account

    def add_work(self, account: EnergyAccount | None, units: float) -> None:
        if account is None or units <= 0:
            return
        with self._lock:
            account.work += units

    def settle_if_due(self) -> None:
        """Read the meter if `min_interval_s` has passed and requests are running."""
        if not self.available or not self._active:
            return
        with self._lock:
            if self._active and self._due():
                self._settle()

    def close(self, accounts: Iterable[EnergyAccount | None]) -> list[float | None]:
        """Finish these requests (one meter read for all): each one's joules, or None."""
        todo = list(accounts)
        real = [a for a in todo if a is not None]
        if real:
            with self._lock:
                self._settle()
                self._active.difference_update(real)
        return [None if a is None or a.failed else a.joules for a in todo]

    def close_one(self, account: EnergyAccount | None) -> float | None:
        return self.close([account])[0]

    def _due(self) -> bool:
        return self._clock() - self._last_read >= self.min_interval_s

    def _settle(self) -> None:
        """Read the meter and split the energy since the last read (caller holds the lock)."""
        reading = self.meter.read()
        self._last_read = self._clock()
        joules = reading.joules if reading.available else None
        if joules is None or not math.isfinite(joules):
            for a in self._active:  # this interval is unknown: so are their totals
                a.failed = True
            self._last_joules = None
            return
        if self._last_joules is not None:
            # A counter that went backwards (driver reset) gives nothing, never negative energy.
            split_interval(max(0.0, joules - self._last_joules), self._active)
        else:
            for a in self._active:  # the interval before this read was not measured
                a.failed = True
        self._last_joules = joules


def engine_attributor(meter: EnergySource | None, read_interval_ms: float) -> EnergyAttributor:
    """An engine's attributor: over the real NVML meter unless one is given (tests pass a
    double of the hardware counter), read at most every `read_interval_ms` while requests run."""
    return EnergyAttributor(
        meter if meter is not None else EnergyMeter(), min_interval_s=read_interval_ms / 1000.0
    )
