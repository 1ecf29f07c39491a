"""One generation request as the engine core sees it: token ids in, token events out."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from local_engine.energy_attribution import EnergyAccount
from local_engine.sampling_params import SamplingParams
from local_engine.spec_decode.adaptive import AdaptiveSpeculation
from local_engine.spec_decode.proposer import Proposer

# "overloaded": refused while still queued, to make room for another owner (fair_queue)
FinishReason = Literal["stop", "length", "cancelled", "error", "overloaded"]


@dataclass(frozen=True, slots=True)
class TokensEvent:
    token_ids: list[int]


@dataclass(frozen=True, slots=True)
class FinishEvent:
    reason: FinishReason
    error: str | None = None
    energy_joules: float | None = None  # GPU energy charged to the request; None: not measured


Event = TokensEvent | FinishEvent
EventSink = Callable[[Event], None]


@dataclass(slots=True)
class GenerationRequest:
    """What to generate; `sink` is called on the engine thread and must not block."""

    prompt_ids: list[int]
    max_tokens: int
    sampling: SamplingParams
    stop_token_ids: frozenset[int]
    sink: EventSink
    speculate: bool = True
    owner: str = ""  # whose request (the gateway's tenant): the queue is fair between owners
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted_at: float = field(default_factory=time.perf_counter)

    def cancel(self) -> None:
        self.cancelled.set()


class Sequence:
    """A request's decoding state. The KV cache holds every token but the last (fed next)."""

    def __init__(
        self,
        request: GenerationRequest,
        adaptive: AdaptiveSpeculation,
        proposer: Proposer | None,
    ) -> None:
        self.request = request
        self.adaptive = adaptive
        self.proposer = proposer
        self.num_prompt = len(request.prompt_ids)
        self._buffer = np.zeros(self.num_prompt + request.max_tokens + 1, dtype=np.int64)
        self._buffer[: self.num_prompt] = request.prompt_ids
        self.length = self.num_prompt
        self.num_generated = 0
        self.position = 0  # next position id == real tokens in the cache
        self.generator: torch.Generator | None = None
        if request.sampling.seed is not None:
            self.generator = torch.Generator().manual_seed(request.sampling.seed)
        self.finished: FinishReason | None = None
        self.energy: EnergyAccount | None = None

    @property
    def tokens(self) -> np.ndarray:
        return self._buffer[: self.length]

    @property
    def last_token(self) -> int:
        return int(self._buffer[self.length - 1])

    @property
    def remaining(self) -> int:
        return self.request.max_tokens - self.num_generated

    def accept(self, new_tokens: list[int]) -> list[int]:
        """Append generated tokens, cut at a stop token or max_tokens; returns those kept."""
        kept: list[int] = []
        for token in new_tokens:
            if self.remaining <= 0:
                break
            kept.append(token)
            self._buffer[self.length] = token
            self.length += 1
            self.num_generated += 1
            if token in self.request.stop_token_ids:
                self.finished = "stop"
                break
        if self.finished is None and self.remaining <= 0:
            self.finished = "length"
        return kept
