"""The local engine's HTTP server, driven through the official openai SDK.

One real uvicorn server (bundled SmolLM2, fp32, ngram speculation) serves the whole module;
requests generate few tokens. Usage counts are checked against the tokenizer, and greedy output
is checked token for token against a speculation-free engine and against Hugging Face `generate`.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import uvicorn

from local_engine.backends.transformers_backend import TransformersBackend
from local_engine.config import EngineConfig, SpeculativeConfig
from local_engine.server import create_app

pytestmark = [pytest.mark.slow, pytest.mark.integration]

MODEL = "smollm2-135m"
TEXT = (
    "The quarterly report shows that revenue grew by twelve percent, driven by strong sales in "
    "the northern region, while costs rose by only four percent thanks to the new logistics "
    "contract. The board approved the budget for the next year and asked the team to hire "
    "three more engineers."
)
COPY_MESSAGES = [
    {
        "role": "user",
        "content": "Rewrite this text, replacing 'engineers' with 'designers':\n\n" + TEXT,
    }
]
OPEN_MESSAGES = [{"role": "user", "content": "Write a short poem about autumn."}]


class EngineServer:
    """A real uvicorn server for the engine app, on a free port, in a background thread."""

    def __init__(self, backend: Any, startup_timeout_s: float = 180) -> None:
        self.backend = backend
        # Bound now and handed to uvicorn: a port only picked here would stay free for the
        # seconds the model takes to load, and another process (vLLM's workers) could take it.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(
                create_app(self.backend), port=self.port, log_level="warning", lifespan="on"
            )
        )
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + startup_timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("engine server did not start")
            time.sleep(0.1)
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def engine() -> Iterator[EngineServer]:
    server = EngineServer(
        TransformersBackend(
            EngineConfig(dtype="float32", speculative=SpeculativeConfig(method="ngram"))
        )
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(engine: EngineServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=engine.base + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def tokenizer(engine: EngineServer) -> Any:
    return engine.backend.tokenizer


def prompt_len(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    return len(tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"])


def test_chat_usage_is_exact_and_max_tokens_is_honoured(
    client: openai.OpenAI, tokenizer: Any
) -> None:
    r = client.chat.completions.create(
        model=MODEL, messages=OPEN_MESSAGES, max_tokens=7, temperature=0
    )
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None
    assert r.usage.prompt_tokens == prompt_len(tokenizer, OPEN_MESSAGES)
    assert r.usage.completion_tokens == 7
    assert r.usage.total_tokens == r.usage.prompt_tokens + 7
    assert r.choices[0].message.content


def test_stream_matches_non_stream_and_reports_usage(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "messages": COPY_MESSAGES,
        "max_tokens": 24,
        "temperature": 0,
    }
    whole = client.chat.completions.create(**kwargs)
    chunks = list(
        client.chat.completions.create(
            **kwargs, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert whole.usage is not None
    assert chunks[-1].usage.model_dump() == whole.usage.model_dump()


def test_stop_sequence_cuts_the_answer(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "messages": COPY_MESSAGES,
        "max_tokens": 30,
        "temperature": 0,
    }
    full = client.chat.completions.create(**kwargs)
    content = full.choices[0].message.content or ""
    words = content.split()
    assert len(words) > 4, content
    stop = words[3]
    cut = client.chat.completions.create(**kwargs, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == content[: content.index(stop)]
    assert cut.usage is not None and full.usage is not None
    assert 0 < cut.usage.completion_tokens < full.usage.completion_tokens
    streamed = client.chat.completions.create(**kwargs, stop=[stop], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == (
        cut.choices[0].message.content
    )


def test_completions_with_token_ids(client: openai.OpenAI, tokenizer: Any) -> None:
    ids = tokenizer("The capital of France is")["input_ids"]
    r = client.completions.create(model=MODEL, prompt=ids, max_tokens=5, temperature=0)
    assert r.usage is not None
    assert r.usage.prompt_tokens == len(ids) and r.usage.completion_tokens == 5
    by_text = client.completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=5, temperature=0
    )
    assert by_text.choices[0].text == r.choices[0].text


def test_prompts_the_model_cannot_run_are_refused_or_started_from_bos(
    client: openai.OpenAI, tokenizer: Any
) -> None:
    """Neither reaches the model's forward pass as is (they broke it, failing every request)."""
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL, prompt=[len(tokenizer)], max_tokens=2)
    assert err.value.body["param"] == "prompt"  # type: ignore[index]
    r = client.completions.create(model=MODEL, prompt="", max_tokens=2, temperature=0)
    assert r.usage is not None and r.usage.prompt_tokens == 1  # the start token


def test_what_does_not_fit_the_context_is_context_length_exceeded(
    client: openai.OpenAI, engine: EngineServer, tokenizer: Any
) -> None:
    context = engine.backend.config.max_model_len
    ids = tokenizer("The capital of France is")["input_ids"]
    for prompt, max_tokens, param in (
        (ids * (context // len(ids) + 1), 1, "prompt"),
        (ids, 100_000, "max_tokens"),  # was clamped silently to what fits
    ):
        with pytest.raises(openai.BadRequestError) as err:
            client.completions.create(model=MODEL, prompt=prompt, max_tokens=max_tokens)
        assert err.value.code == "context_length_exceeded"
        assert err.value.param == param
    # Without max_tokens the answer may run to the context's end.
    r = client.completions.create(model=MODEL, prompt=[ids[0]] * (context - 2), temperature=0)
    assert r.usage is not None and r.usage.completion_tokens <= 2


def test_models_and_errors(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [MODEL]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=OPEN_MESSAGES)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=OPEN_MESSAGES, n=2)
    assert err.value.body["param"] == "n"  # type: ignore[index]


def test_greedy_output_is_identical_with_and_without_speculation(
    client: openai.OpenAI, engine: EngineServer
) -> None:
    """fp32: speculation (verify in one pass) must not change greedy tokens."""
    plain = TransformersBackend(
        EngineConfig(dtype="float32", speculative=SpeculativeConfig(method="off"))
    )

    async def plain_answers() -> list[dict[str, Any]]:
        await plain.start()
        try:
            return [
                await plain.complete(
                    "chat/completions",
                    {
                        "messages": msgs,
                        "max_tokens": 40,
                        "temperature": 0,
                    },
                )
                for msgs in (COPY_MESSAGES, OPEN_MESSAGES)
            ]
        finally:
            await plain.aclose()

    before = engine.backend.stats().spec
    expected = asyncio.run(plain_answers())
    for msgs, want in zip((COPY_MESSAGES, OPEN_MESSAGES), expected, strict=True):
        got = client.chat.completions.create(
            model=MODEL, messages=msgs, max_tokens=40, temperature=0
        )
        assert got.choices[0].message.content == want["choices"][0]["message"]["content"]
        assert got.usage is not None
        assert got.usage.completion_tokens == want["usage"]["completion_tokens"]
    after = engine.backend.stats().spec
    assert after.num_draft_tokens > before.num_draft_tokens  # speculation really ran
    assert after.num_accepted_tokens > before.num_accepted_tokens


def test_greedy_output_matches_hugging_face_generate(
    client: openai.OpenAI, engine: EngineServer, tokenizer: Any
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    assert engine.backend.model_dir is not None
    model = AutoModelForCausalLM.from_pretrained(engine.backend.model_dir, dtype=torch.float32)
    ids = tokenizer.apply_chat_template(
        COPY_MESSAGES, add_generation_prompt=True, return_tensors="pt"
    )["input_ids"]
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=20, do_sample=False)
    want = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    got = client.chat.completions.create(
        model=MODEL, messages=COPY_MESSAGES, max_tokens=20, temperature=0
    )
    assert got.choices[0].message.content == want


def test_concurrent_requests_are_batched_and_all_complete(
    client: openai.OpenAI, engine: EngineServer
) -> None:
    async def run() -> list[Any]:
        aclient = openai.AsyncOpenAI(base_url=engine.base + "/v1", api_key="unused")
        try:
            return await asyncio.gather(
                *[
                    aclient.chat.completions.create(
                        model=MODEL,
                        messages=[{"role": "user", "content": f"Name a fruit, #{i}."}],
                        max_tokens=6,
                        temperature=0.8,
                        seed=i,
                    )
                    for i in range(4)
                ]
            )
        finally:
            await aclient.close()

    results = asyncio.run(run())
    assert all(r.usage.completion_tokens <= 6 for r in results)
    assert all(r.choices[0].finish_reason in ("stop", "length") for r in results)


def test_disconnect_cancels_generation_and_metrics_show_it(engine: EngineServer) -> None:
    body = {
        "model": MODEL,
        "messages": OPEN_MESSAGES,
        "max_tokens": 400,
        "temperature": 0,
        "stream": True,
    }
    before = engine.backend.stats().completion_tokens_total
    with httpx.stream("POST", engine.base + "/v1/chat/completions", json=body, timeout=60) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i >= 3:
                break
    deadline = time.monotonic() + 20
    while engine.backend.stats().running and time.monotonic() < deadline:
        time.sleep(0.1)
    stats = engine.backend.stats()
    assert stats.running == 0
    assert stats.completion_tokens_total - before < 400

    # Non-streaming: the client gives up (read timeout closes the connection).
    before = engine.backend.stats().completion_tokens_total
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            engine.base + "/v1/chat/completions",
            json={**body, "stream": False},
            timeout=httpx.Timeout(60, read=1.5),
        )
    deadline = time.monotonic() + 20
    while engine.backend.stats().running and time.monotonic() < deadline:
        time.sleep(0.1)
    stats = engine.backend.stats()
    assert stats.running == 0
    assert stats.completion_tokens_total - before < 400

    metrics = httpx.get(engine.base + "/metrics", timeout=10).text
    assert "thriftgate_engine_spec_decode_num_accepted_tokens_total" in metrics
    assert "thriftgate_engine_tokens_per_second" in metrics
    assert "thriftgate_engine_cost_per_mtok_usd" in metrics
    assert "thriftgate_engine_energy_available{" in metrics


def test_batched_greedy_decoding_matches_one_at_a_time(
    client: openai.OpenAI, engine: EngineServer
) -> None:
    """Rows of different lengths share one padded batch; each must decode as if alone."""
    prompts = [
        [{"role": "user", "content": "What is 2 + 2?"}],
        COPY_MESSAGES,
        [{"role": "user", "content": "List three colours of the rainbow, please, in order."}],
    ]

    def ask(msgs: list[dict[str, str]]) -> str:
        r = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=12, temperature=0)
        return r.choices[0].message.content or ""

    alone = [ask(m) for m in prompts]

    async def together() -> list[str]:
        aclient = openai.AsyncOpenAI(base_url=engine.base + "/v1", api_key="unused")
        try:
            rs = await asyncio.gather(
                *[
                    aclient.chat.completions.create(
                        model=MODEL, messages=m, max_tokens=12, temperature=0
                    )
                    for m in prompts
                ]
            )
        finally:
            await aclient.close()
        return [r.choices[0].message.content or "" for r in rs]

    assert asyncio.run(together()) == alone


def test_draft_model_speculation_with_the_model_as_its_own_draft(engine: EngineServer) -> None:
    """A draft identical to the target must be accepted (almost) always, output unchanged."""
    assert engine.backend.model_dir is not None
    cfg = EngineConfig(
        dtype="float32",
        speculative=SpeculativeConfig(
            method="draft", draft_model=engine.backend.model_dir, num_speculative_tokens=4
        ),
    )
    drafted = TransformersBackend(cfg)
    plain = TransformersBackend(
        EngineConfig(dtype="float32", speculative=SpeculativeConfig(method="off"))
    )
    body = {"messages": OPEN_MESSAGES, "max_tokens": 16, "temperature": 0}

    async def both() -> tuple[dict[str, Any], dict[str, Any]]:
        await drafted.start()
        await plain.start()
        try:
            return (
                await drafted.complete("chat/completions", body),
                await plain.complete("chat/completions", body),
            )
        finally:
            await drafted.aclose()
            await plain.aclose()

    got, want = asyncio.run(both())
    assert got["choices"][0]["message"]["content"] == want["choices"][0]["message"]["content"]
    spec = drafted.stats().spec
    assert spec.num_draft_tokens > 0
    assert spec.acceptance_rate is not None and spec.acceptance_rate > 0.9
