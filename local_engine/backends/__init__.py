"""Serving backends, chosen by `EngineConfig.backend`."""

from __future__ import annotations

from local_engine.backends.base import ServingBackend
from local_engine.config import EngineConfig


def create_backend(config: EngineConfig) -> ServingBackend:
    if config.backend == "transformers":
        from local_engine.backends.transformers_backend import TransformersBackend

        return TransformersBackend(config)
    if config.backend == "vllm":
        from local_engine.backends.vllm_backend import VllmBackend

        return VllmBackend(config)
    raise ValueError(f"unknown backend {config.backend!r}")


__all__ = ["ServingBackend", "create_backend"]
