"""Hunt 9 (h4): a long prompt joining a running batch must not freeze the other streams.

Its prefill was one pass: a 1,963-token prompt stopped every other stream for 5.3 s on the
2-core box (their median gap between tokens: 63 ms). It is now fed a chunk per decode step.
"""

from __future__ import annotations

import threading

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from local_engine.backends.engine_core import EngineCore
from local_engine.backends.sequence import Event, FinishEvent, GenerationRequest, TokensEvent
from local_engine.config import EngineConfig, SpeculativeConfig
from local_engine.sampling_params import SamplingParams
from local_engine.stats import StatsRecorder

VOCAB = 64
LONG = [int(t) for t in torch.randint(3, VOCAB, (120,), generator=torch.Generator().manual_seed(1))]


class Row:
    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.finish: FinishEvent | None = None
        self.first = threading.Event()
        self.done = threading.Event()
        self.on_first: list[int] = []  # the other row's token count when this one's first came

    def sink(self, event: Event, other: Row | None = None) -> None:
        if isinstance(event, TokensEvent):
            if not self.tokens and other is not None:
                self.on_first.append(len(other.tokens))
            self.tokens.extend(event.token_ids)
            self.first.set()
        else:
            self.finish = event
            self.done.set()


def engine() -> EngineCore:
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=256,
        )
    ).eval()
    config = EngineConfig(
        speculative=SpeculativeConfig(method="off"),
        batch_wait_ms=0,
        max_model_len=256,
        prefill_chunk_tokens=8,
    )
    core = EngineCore(model, config, StatsRecorder(config.hardware_usd_per_hour))
    core.start()
    return core


def request(prompt: list[int], max_tokens: int, sink: object) -> GenerationRequest:
    return GenerationRequest(
        prompt_ids=prompt,
        max_tokens=max_tokens,
        sampling=SamplingParams(temperature=0.0),
        stop_token_ids=frozenset(),
        sink=sink,  # type: ignore[arg-type]
    )


def test_a_long_prompt_is_prefilled_while_the_running_row_keeps_decoding() -> None:
    core = engine()
    try:
        alone = Row()
        core.submit(request(LONG, 4, alone.sink))
        assert alone.done.wait(30)

        running, joining = Row(), Row()
        core.submit(request([5, 6, 7, 8], 100, running.sink))
        assert running.first.wait(30)
        before = len(running.tokens)
        core.submit(request(LONG, 4, lambda event: joining.sink(event, running)))
        assert joining.done.wait(30) and running.done.wait(30)
    finally:
        core.shutdown()
    assert joining.finish is not None and joining.finish.reason == "length"
    assert joining.tokens == alone.tokens  # chunked, the prompt reads the same
    # 120 tokens in chunks of 8: the running row decoded between the chunks (one pass: ~1)
    assert joining.on_first[0] - before >= 8, (before, joining.on_first)
