"""Serving backends, chosen by `EngineConfig.backend`."""

from __future__ import annotations

from local_engine.backends.base import ServingBackend
from local_engine.config import EngineConfig
from local_engine.energy_attribution import EnergySource


def create_backend(config: EngineConfig, meter: EnergySource | None = None) -> ServingBackend:
    """`meter`: the GPU energy counter (default: NVML via `EnergyMeter`; tests pass a double)."""
    if config.backend == "transformers":
        from local_engine.backends.transformers_backend import TransformersBackend

        return TransformersBackend(config, meter)
    if config.backend == "vllm":
        from local_engine.backends.vllm_backend import VllmBackend

        return VllmBackend(config, meter)
    raise ValueError(f"unknown backend {config.backend!r}")


__all__ = ["ServingBackend", "create_backend"]
