"""Hunt 9 (h4): a model with fewer positions than `max_model_len` (GPT-2's 1,024 under the default
2,048) must be served within its positions: past them its position table has no row, and the
IndexError failed the request's whole batch (500s) instead of a 400 for the one too long."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from local_engine.backends.engine_core import EngineCore
from local_engine.backends.sequence import Event, FinishEvent, GenerationRequest
from local_engine.backends.transformers_backend import TransformersBackend
from local_engine.config import EngineConfig, SpeculativeConfig
from local_engine.errors import BadEngineRequest
from local_engine.sampling_params import SamplingParams
from local_engine.stats import StatsRecorder

VOCAB = 48
POSITIONS = 32


def tiny_gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB, n_positions=POSITIONS, n_embd=16, n_layer=1, n_head=2, eos_token_id=2
    )
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, VOCAB)}}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    tiny_gpt2().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_the_context_is_capped_at_the_models_positions(model_dir: Path) -> None:
    async def run() -> None:
        backend = TransformersBackend(
            EngineConfig(
                model=model_dir, dtype="float32", speculative=SpeculativeConfig(method="off")
            )
        )
        await backend.start()
        try:
            body = {"prompt": list(range(3, 23)), "max_tokens": 8, "temperature": 0}
            ok = await backend.complete("completions", body)  # 20 + 8 fit in 32
            assert ok["usage"]["completion_tokens"] >= 1
            for prompt, max_tokens, param in ((20, 20, "max_tokens"), (40, 1, "prompt")):
                body = {"prompt": [5] * prompt, "max_tokens": max_tokens, "temperature": 0}
                with pytest.raises(BadEngineRequest) as info:
                    await backend.complete("completions", body)
                assert info.value.code == "context_length_exceeded" and info.value.param == param
        finally:
            await backend.aclose()

    asyncio.run(run())


def test_a_row_near_the_end_survives_another_rows_drafts() -> None:
    """The step pads every row to the widest row's drafts; a padding column past the model's last
    position (masked, but still looked up) failed the whole batch, the valid row too."""
    vocab, positions = 24, 64
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=vocab,
            n_positions=positions,
            n_embd=16,
            n_layer=1,
            n_head=2,
            bos_token_id=1,
            eos_token_id=2,
        )
    ).eval()
    spec = SpeculativeConfig(
        method="ngram",
        num_speculative_tokens=8,
        adaptive=False,
        prompt_lookup_min=1,
        prompt_lookup_max=1,
    )
    config = EngineConfig(speculative=spec, batch_wait_ms=100, max_model_len=positions)
    core = EngineCore(model, config, StatsRecorder(config.hardware_usd_per_hour))
    results: dict[str, FinishEvent] = {}
    done = threading.Event()

    def req(name: str, prompt: list[int], max_tokens: int) -> GenerationRequest:
        def sink(event: Event) -> None:
            if isinstance(event, FinishEvent):
                results[name] = event
                if len(results) == 2:
                    done.set()

        return GenerationRequest(
            prompt_ids=prompt,
            max_tokens=max_tokens,
            sampling=SamplingParams(temperature=0.0),
            stop_token_ids=frozenset(),
            sink=sink,
        )

    every = list(range(3, vocab))  # any next token occurs earlier: prompt lookup always drafts
    core.start()
    try:
        core.submit(req("near", every * 2 + [7] * (positions - 4 - 2 * len(every)), 4))
        core.submit(req("copy", every, 30))
        assert done.wait(60)
    finally:
        core.shutdown()
    assert {name: (event.reason, event.error) for name, event in results.items()} == {
        "near": ("length", None),
        "copy": ("length", None),
    }
