"""The serving-backend contract: OpenAI-shaped bodies in, OpenAI-shaped responses out.

The HTTP server and the gateway's in-process `LocalProvider` both talk to a backend through
this interface, so `transformers` (in-process) and `vllm` (subprocess) are interchangeable.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Protocol

from local_engine.energy_attribution import EnergySource
from local_engine.protocol import Endpoint
from local_engine.stats import EngineStats

Json = dict[str, Any]


class ServingBackend(Protocol):
    name: str  # "transformers" or "vllm"
    model_name: str  # the id /v1/models lists
    meter: EnergySource  # GPU energy (NVML) or "unavailable"; /metrics reads it too

    async def start(self) -> None:
        """Load the model / launch the server; returns once requests can be served."""
        ...

    async def complete(self, endpoint: Endpoint, body: Json, owner: str = "") -> Json:
        """The response; its `usage.energy_joules` is present only where energy is measured.
        `owner` (the gateway's tenant) is whom the request is queued for: the transformers
        backend shares its batch fairly between owners; vLLM schedules by itself."""
        ...

    def stream(self, endpoint: Endpoint, body: Json, owner: str = "") -> AsyncGenerator[Json, None]:
        """Chunks, then (if `stream_options.include_usage`) the usage chunk; raises before the
        first chunk if the request is refused; closing the iterator cancels the generation."""
        ...

    def stats(self) -> EngineStats: ...

    async def extra_metrics(self) -> str:
        """Backend-specific Prometheus text appended to /metrics ("" when none)."""
        ...

    async def aclose(self) -> None: ...
