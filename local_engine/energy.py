"""GPU energy from NVML, when it can be read; otherwise an explicit "unavailable" and a reason.

No figure is ever estimated: on a CPU-only host (or without `nvidia-ml-py`) the engine reports
that energy is unavailable instead of inventing tokens per joule.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class EnergyReading:
    available: bool
    reason: str  # why not, or "nvml"
    joules: float | None = None  # consumed since the meter started, all visible GPUs
    power_w: float | None = None


class EnergyMeter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nvml: Any = None
        self._handles: list[Any] = []
        self._start_mj: list[int] = []
        self.reason = "unknown"
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            if count == 0:
                self.reason = "no NVIDIA GPU visible"
                return
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._start_mj = [
                int(pynvml.nvmlDeviceGetTotalEnergyConsumption(h)) for h in self._handles
            ]
            self._nvml = pynvml
            self.reason = "nvml"
        except ImportError:
            self.reason = "nvidia-ml-py not installed (CPU host: energy not measured)"
        except Exception as exc:  # NVML missing/unsupported: say so, never guess
            self.reason = f"NVML unreadable: {type(exc).__name__}"

    def read(self) -> EnergyReading:
        if self._nvml is None:
            return EnergyReading(available=False, reason=self.reason)
        with self._lock:
            try:
                total_mj = sum(
                    int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h)) - start
                    for h, start in zip(self._handles, self._start_mj, strict=True)
                )
                power_mw = sum(int(self._nvml.nvmlDeviceGetPowerUsage(h)) for h in self._handles)
            except Exception as exc:
                return EnergyReading(available=False, reason=f"NVML read failed: {exc}")
        return EnergyReading(
            available=True, reason="nvml", joules=total_mj / 1000.0, power_w=power_mw / 1000.0
        )
