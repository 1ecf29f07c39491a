"""Doubles of the GPU's cumulative energy counter (what NVML's total-energy call returns).

This host has no GPU, so the hardware counter is the one thing tests replace; the attribution,
the `usage.energy_joules` reporting and the ledger write they feed are the real code.
"""

from __future__ import annotations

import threading
import time

from local_engine.energy import EnergyReading


class ManualCounter:
    """A counter the test moves by hand; `fail` makes reads fail like an NVML error."""

    def __init__(self, joules: float = 1000.0) -> None:
        self.joules = joules
        self.fail = False
        self.reads = 0

    def read(self) -> EnergyReading:
        self.reads += 1
        if self.fail:
            return EnergyReading(available=False, reason="NVML read failed: test")
        return EnergyReading(available=True, reason="nvml", joules=self.joules, power_w=None)


class ConstantPowerCounter:
    """A GPU drawing `watts` all the time: joules = watts x seconds since it was created."""

    def __init__(self, watts: float = 250.0) -> None:
        self.watts = watts
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self.reads = 0

    def read(self) -> EnergyReading:
        with self._lock:
            self.reads += 1
        joules = self.watts * (time.monotonic() - self._start)
        return EnergyReading(available=True, reason="nvml", joules=joules, power_w=self.watts)
