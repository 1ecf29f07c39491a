"""EngineCore shares its batch and queue fairly between owners (the gateway's tenants).

A flooding tenant used to hold every batch slot and the whole queue, first come first served:
another tenant's short question waited for the flood's long answers to end, or was refused
with "queue full". The core is driven by hand here (its thread is not started): `submit` and
`_admit` run on a tiny random Llama, so which requests hold the slots is exact, not timed.
"""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from local_engine.backends.engine_core import EngineCore
from local_engine.backends.sequence import Event, FinishEvent, GenerationRequest
from local_engine.config import EngineConfig, SpeculativeConfig
from local_engine.errors import EngineOverloaded
from local_engine.sampling_params import SamplingParams
from local_engine.stats import StatsRecorder


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(config).eval()


def core_of(model: LlamaForCausalLM, **options: int) -> EngineCore:
    config = EngineConfig(speculative=SpeculativeConfig(method="off"), max_model_len=128, **options)
    return EngineCore(model, config, StatsRecorder(config.hardware_usd_per_hour))


class Finishes:
    def __init__(self) -> None:
        self.events: list[FinishEvent] = []

    def sink(self, event: Event) -> None:
        if isinstance(event, FinishEvent):
            self.events.append(event)


def req(owner: str, sink: Finishes | None = None) -> GenerationRequest:
    return GenerationRequest(
        prompt_ids=[1, 2, 3],
        max_tokens=100,  # long answers: nothing finishes while the test admits
        sampling=SamplingParams(temperature=0.0),
        stop_token_ids=frozenset(),
        sink=(sink or Finishes()).sink,
        owner=owner,
    )


def owners_running(core: EngineCore) -> list[str]:
    return [seq.request.owner for seq in core._seqs]


def test_a_tenant_queued_behind_a_flood_gets_the_next_free_slot(model: LlamaForCausalLM) -> None:
    core = core_of(model, max_batch_size=4, newcomer_slots=0)
    for _ in range(10):
        core.submit(req("flood"))
    core.submit(req("victim"))  # the eleventh in line, first come first served
    core._admit()
    assert sorted(owners_running(core)) == ["flood", "flood", "flood", "victim"]


def test_one_tenant_cannot_fill_the_last_slot(model: LlamaForCausalLM) -> None:
    core = core_of(model, max_batch_size=4)  # newcomer_slots: 1 by default
    earlier = req("victim")  # the victim has been here lately (its request was cancelled)
    earlier.cancel()
    core.submit(earlier)
    for _ in range(10):
        core.submit(req("flood"))
    core._admit()
    assert owners_running(core) == ["flood"] * 3  # the fourth slot waits for someone else
    core.submit(req("victim"))
    core._admit()  # at the next step, not after one of the flood's 100-token answers
    assert owners_running(core) == ["flood"] * 3 + ["victim"]
    assert len(core._pending) == 7


def test_a_lone_tenant_uses_every_slot(model: LlamaForCausalLM) -> None:
    """Nobody else has sent anything lately: no slot is kept idle for nobody."""
    core = core_of(model, max_batch_size=4)
    for _ in range(6):
        core.submit(req("only"))
    core._admit()
    assert owners_running(core) == ["only"] * 4


def test_requests_without_an_owner_use_every_slot(model: LlamaForCausalLM) -> None:
    """The engine's own HTTP server names no tenants: nothing is kept back there."""
    core = core_of(model, max_batch_size=4)
    for _ in range(6):
        core.submit(req(""))
    core._admit()
    assert len(core._seqs) == 4


def test_a_full_queue_makes_room_for_a_tenant_with_less_waiting(
    model: LlamaForCausalLM,
) -> None:
    core = core_of(model, max_batch_size=4, max_queue=4)
    flood = [Finishes() for _ in range(4)]
    for sink in flood:
        core.submit(req("flood", sink))
    with pytest.raises(EngineOverloaded):  # the flood's own queue is the longest
        core.submit(req("flood"))
    core.submit(req("victim"))  # refused here before: the queue was full
    assert [e.reason for e in flood[-1].events] == ["overloaded"]  # the newest, never started
    assert all(not s.events for s in flood[:-1])
    core._admit()
    assert "victim" in owners_running(core)


def test_a_short_question_starts_beside_a_long_prompts_prefill(model: LlamaForCausalLM) -> None:
    """A flood of long prompts is prefilled a chunk per step, and each chunked prefill held
    every free slot until it ended: another tenant's one-line question waited out each one
    (TTFT p50 3.3 s under a flood of 958-token prompts on the bundled model)."""
    core = core_of(model, max_batch_size=4, prefill_chunk_tokens=8)
    core.submit(req("flood"))
    core._admit()  # a row running, so the next long prompt is prefilled in chunks
    long = GenerationRequest(
        prompt_ids=list(range(1, 40)),
        max_tokens=20,
        sampling=SamplingParams(temperature=0.0),
        stop_token_ids=frozenset(),
        sink=Finishes().sink,
        owner="flood",
    )
    core.submit(long)
    core._admit()
    assert core._partial is not None and core._partial.seq.request is long
    core.submit(req("victim"))
    core._admit()
    assert core._partial is not None and core._partial.seq.request is long  # still going
    assert owners_running(core) == ["flood", "victim"]


class _Tokenizer:
    def apply_chat_template(self, messages: object, **_: object) -> list[int]:
        return [1, 2, 3]


class _PushedOut:
    """A core whose queue refuses the request it was given, as a fuller tenant's would be."""

    def submit(self, request: GenerationRequest) -> None:
        request.sink(FinishEvent("overloaded", "the local engine's queue is full"))


def test_a_request_pushed_out_of_the_queue_is_an_overloaded_engine() -> None:
    """Busy, not broken: the gateway falls back, or answers 503 with Retry-After."""
    import asyncio

    from local_engine.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(EngineConfig(max_model_len=100))
    backend._core, backend._tokenizer = _PushedOut(), _Tokenizer()  # type: ignore[assignment]
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    with pytest.raises(EngineOverloaded):
        asyncio.run(backend.complete("chat/completions", body, owner="victim"))
