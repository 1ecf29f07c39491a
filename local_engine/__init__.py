"""thriftgate's local engine: an OpenAI-compatible server over a local model.

Backends: `transformers` (in-process, CPU default, continuous batching with adaptive
prompt-lookup or draft-model speculation) and `vllm` (vLLM's server as a subprocess, with its
own speculative decoding configured from ours).
"""

from local_engine.backends import ServingBackend, create_backend
from local_engine.config import EngineConfig, SpeculativeConfig, VllmConfig
from local_engine.stats import EngineStats

__all__ = [
    "EngineConfig",
    "EngineStats",
    "ServingBackend",
    "SpeculativeConfig",
    "VllmConfig",
    "create_backend",
]
