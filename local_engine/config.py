"""Typed engine configuration: one frozen model per concern, read once and passed down.

`EngineConfig` picks the backend (`transformers` in-process, or `vllm` as a subprocess) and the
speculation method; factories (`backends.create_backend`, `spec_decode.create_proposer`) branch
on these fields, so adding a method is one class plus one branch.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

BackendKind = Literal["transformers", "vllm"]
# "eagle", "eagle3" and "mtp" use heads trained for the model; only the vLLM backend has them.
SpeculativeMethod = Literal["off", "ngram", "draft", "eagle", "eagle3", "mtp"]
VLLM_ONLY_METHODS = frozenset({"eagle", "eagle3", "mtp"})
DType = Literal["auto", "float32", "bfloat16", "float16"]

DEFAULT_MODEL_NAME = "smollm2-135m"


class SpeculativeConfig(BaseModel):
    """How (and whether) to speculate. Field names follow vLLM's `--speculative-config`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: SpeculativeMethod = "ngram"
    num_speculative_tokens: int = Field(default=10, ge=1, le=64)
    prompt_lookup_min: int = Field(default=2, ge=1)
    prompt_lookup_max: int = Field(default=4, ge=1)
    draft_model: Path | None = None
    # Adaptive control: speculation pauses when the smoothed acceptance rate (accepted / proposed
    # drafts) falls below `min_acceptance`, and probes again after a back-off that doubles each
    # time it fails. 1.0 disables nothing; 0.0 never pauses.
    adaptive: bool = True
    min_acceptance: float = Field(default=0.25, ge=0.0, le=1.0)
    acceptance_ewma_alpha: float = Field(default=0.3, gt=0.0, le=1.0)
    pause_steps: int = Field(default=8, ge=1)
    max_pause_steps: int = Field(default=128, ge=1)
    # Load control: rows of a batch share at most this many draft tokens per step (a row drafts
    # only when its share is at least 2), so speculation fades out as concurrency grows; within
    # it the step width is chosen by measured step cost (spec_decode/step_cost.py).
    max_batch_draft_tokens: int = Field(default=64, ge=0)
    # In a batch every drafted token costs real compute (the step is no longer bandwidth-bound),
    # so a row keeps drafting there only while its acceptance stays above this higher floor.
    min_acceptance_batched: float = Field(default=0.5, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> SpeculativeConfig:
        if self.prompt_lookup_min > self.prompt_lookup_max:
            raise ValueError("prompt_lookup_min must be <= prompt_lookup_max")
        if self.method in ("draft", "eagle", "eagle3") and self.draft_model is None:
            raise ValueError(f"speculative method {self.method!r} needs draft_model")
        return self

    @property
    def enabled(self) -> bool:
        return self.method != "off"


class VllmConfig(BaseModel):
    """Options for the vLLM subprocess backend."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    python: Path | None = None  # interpreter of the (separate) vLLM environment
    port: int = Field(default=0, ge=0, le=65535)  # 0: pick a free port
    startup_timeout_s: float = Field(default=600.0, gt=0)
    dtype: str = "bfloat16"
    max_model_len: int = Field(default=2048, ge=64)
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)


class EngineConfig(BaseModel):
    """Everything the engine needs; built by the CLI or from a deployment's `options`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: BackendKind = "transformers"
    model: Path | None = None  # a local HF folder; None: the bundled SmolLM2 (converted once)
    served_model_name: str = DEFAULT_MODEL_NAME
    model_cache_dir: Path | None = None  # where the converted GGUF goes; None: env or ~/.cache
    dtype: DType = "auto"
    num_threads: int | None = Field(default=None, ge=1)
    speculative: SpeculativeConfig = SpeculativeConfig()
    max_batch_size: int = Field(default=8, ge=1)
    batch_wait_ms: float = Field(default=5.0, ge=0)  # gather requests that arrive together
    max_queue: int = Field(default=256, ge=1)
    # Batch slots kept for a tenant with nothing running while the gateway names tenants
    # (fair_queue.py): one flooding tenant cannot fill the whole batch. 0: none kept.
    newcomer_slots: int = Field(default=1, ge=0)
    max_model_len: int = Field(default=2048, ge=16)
    default_max_tokens: int = Field(default=256, ge=1)
    # A longer prompt joining a running batch is prefilled this many tokens per decode step
    # (alone, in one pass): a 2,000-token prefill froze every other stream for ~5 s on 2 cores.
    prefill_chunk_tokens: int = Field(default=256, ge=1)
    hardware_usd_per_hour: Decimal = Field(default=Decimal("0.10"), ge=0)
    # GPU energy per request (NVML): how often the meter may be read while requests run
    # (always also when a request starts on an idle engine and when requests finish).
    energy_read_interval_ms: float = Field(default=50.0, ge=0)
    vllm: VllmConfig = VllmConfig()

    @model_validator(mode="after")
    def _check(self) -> EngineConfig:
        if self.backend == "transformers" and self.speculative.method in VLLM_ONLY_METHODS:
            raise ValueError(
                f"speculative method {self.speculative.method!r} needs the vllm backend"
            )
        return self
