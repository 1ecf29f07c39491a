import json
from pathlib import Path

from local_engine.backends.vllm_args import parse_metrics, server_command, speculative_config
from local_engine.config import EngineConfig, SpeculativeConfig


def test_ngram_translates_to_vllm_speculative_config() -> None:
    spec = SpeculativeConfig(
        method="ngram", num_speculative_tokens=4, prompt_lookup_min=2, prompt_lookup_max=4
    )
    assert speculative_config(spec) == {
        "method": "ngram",
        "num_speculative_tokens": 4,
        "prompt_lookup_max": 4,
        "prompt_lookup_min": 2,
    }


def test_draft_eagle_mtp_and_off() -> None:
    draft = SpeculativeConfig(
        method="draft", draft_model=Path("/m/small"), num_speculative_tokens=3
    )
    assert speculative_config(draft) == {
        "method": "draft_model",
        "model": "/m/small",
        "num_speculative_tokens": 3,
    }
    eagle = SpeculativeConfig(method="eagle3", draft_model=Path("/m/eagle"))
    assert speculative_config(eagle)["method"] == "eagle3"
    assert speculative_config(SpeculativeConfig(method="mtp"))["method"] == "mtp"
    assert speculative_config(SpeculativeConfig(method="off")) is None


def test_server_command_uses_the_module_entry_point() -> None:
    cfg = EngineConfig(
        backend="vllm",
        served_model_name="smol",
        speculative=SpeculativeConfig(num_speculative_tokens=4),
    )
    cmd = server_command(cfg, Path("/models/smol"), 8123, "/venv/bin/python")
    assert cmd[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[cmd.index("--port") + 1] == "8123"
    assert cmd[cmd.index("--served-model-name") + 1] == "smol"
    spec = json.loads(cmd[cmd.index("--speculative-config") + 1])
    assert spec["method"] == "ngram" and spec["num_speculative_tokens"] == 4
    off = EngineConfig(backend="vllm", speculative=SpeculativeConfig(method="off"))
    assert "--speculative-config" not in server_command(off, Path("/m"), 1, "python")


# Shape of vLLM 0.1x's /metrics (trimmed); values are arbitrary.
VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="smol"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="smol"} 2.0
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{engine="0",model_name="smol"} 1200.0
# TYPE vllm:prompt_tokens counter
vllm:prompt_tokens_total{engine="0",model_name="smol"} 300.0
# TYPE vllm:spec_decode_num_drafts counter
vllm:spec_decode_num_drafts_total{engine="0",model_name="smol"} 100.0
# TYPE vllm:spec_decode_num_draft_tokens counter
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="smol"} 400.0
# TYPE vllm:spec_decode_num_accepted_tokens counter
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="smol"} 200.0
# TYPE vllm:spec_decode_num_accepted_tokens_per_pos counter
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="smol",position="0"} 90.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="smol",position="1"} 60.0
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_sum{engine="0",model_name="smol"} 5.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="smol"} 10.0
"""


def test_acceptance_metrics_are_read_from_vllm() -> None:
    m = parse_metrics(VLLM_METRICS)
    spec = m["spec"]
    assert (spec.num_drafts, spec.num_draft_tokens, spec.num_accepted_tokens) == (100, 400, 200)
    assert spec.acceptance_rate == 0.5
    assert spec.accepted_per_position == (90, 60)
    assert (m["running"], m["waiting"], m["generation_tokens"]) == (3, 2, 1200)
    assert m["ttft_s_mean"] == 0.5


def test_missing_metrics_read_as_zero() -> None:
    m = parse_metrics("")
    assert m["spec"].acceptance_rate is None and m["ttft_s_mean"] is None
