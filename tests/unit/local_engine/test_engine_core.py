"""EngineCore on a tiny random Llama (built in memory, fast on a CPU): failure isolation."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from local_engine.backends.engine_core import EngineCore
from local_engine.backends.sequence import Event, FinishEvent, GenerationRequest, TokensEvent
from local_engine.config import EngineConfig, SpeculativeConfig
from local_engine.sampling_params import SamplingParams
from local_engine.stats import StatsRecorder

VOCAB = 64


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def core(model: LlamaForCausalLM) -> Iterator[EngineCore]:
    config = EngineConfig(
        speculative=SpeculativeConfig(method="off"), batch_wait_ms=50, max_model_len=128
    )
    engine = EngineCore(model, config, StatsRecorder(config.hardware_usd_per_hour))
    engine.start()
    yield engine
    engine.shutdown()


class Outcome:
    """Collects one request's events; `done` is set by its FinishEvent."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.finish: FinishEvent | None = None
        self.done = threading.Event()

    def sink(self, event: Event) -> None:
        if isinstance(event, TokensEvent):
            self.tokens.extend(event.token_ids)
        else:
            self.finish = event
            self.done.set()


def request(prompt_ids: list[int], outcome: Outcome, max_tokens: int = 8) -> GenerationRequest:
    return GenerationRequest(
        prompt_ids=prompt_ids,
        max_tokens=max_tokens,
        sampling=SamplingParams(temperature=0.0),
        stop_token_ids=frozenset(),
        sink=outcome.sink,
    )


def test_a_prefill_that_fails_fails_only_its_own_request(core: EngineCore) -> None:
    good, bad, later = Outcome(), Outcome(), Outcome()
    # Submitted together (batch_wait_ms), so the bad prefill runs while the good one is admitted.
    core.submit(request([1, 2, 3], good))
    core.submit(request([VOCAB], bad))  # out of the embedding table: the forward pass raises
    core.submit(request([4, 5], later))
    for outcome in (good, bad, later):
        assert outcome.done.wait(10), "a request was never answered"
    assert bad.finish is not None and bad.finish.reason == "error"
    for outcome in (good, later):
        assert outcome.finish is not None and outcome.finish.reason == "length"
        assert len(outcome.tokens) == 8
