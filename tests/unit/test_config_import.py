"""`thriftgate config import-litellm`: LiteLLM proxy configs as people write them become a
thriftgate config that passes the gateway's own checks; secrets never reach the output."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from gateway import config_checks
from gateway.cli import app
from gateway.config_import import import_litellm, render
from gateway.settings import ConfigError, FileConfig, load_file_config

SECRET = "sk-proj-LITERALKEY0123456789abcdef"


def deps(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in import_litellm(raw).config["deployments"]}


def parsed(text: str) -> dict[str, Any]:
    raw = yaml.safe_load(text)
    assert isinstance(raw, dict)
    return raw


def test_azure_load_balancing_becomes_one_group_with_options_and_base_model_prices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AZURE_API_KEY_EU", "k1")
    monkeypatch.setenv("AZURE_API_KEY_CA", "k2")
    raw = parsed("""
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o-eu
      api_base: https://eu.openai.azure.com/
      api_key: "os.environ/AZURE_API_KEY_EU"
      api_version: "2024-10-21"
      rpm: 6
    model_info: {base_model: azure/gpt-4o}
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o-ca
      api_base: https://ca.openai.azure.com/
      api_key: os.environ/AZURE_API_KEY_CA
      api_version: 2024-08-01-preview
      timeout: 45
    model_info: {id: azure-ca, input_cost_per_token: 0.0000025, output_cost_per_token: 1e-5}
""")
    got = deps(raw)
    assert set(got) == {"gpt-4o", "azure-ca"}
    eu, ca = got["gpt-4o"], got["azure-ca"]
    assert eu["model"] == ca["model"] == "gpt-4o"
    assert (eu["provider"], eu["upstream_model"]) == ("azure", "gpt-4o-eu")
    assert eu["api_key_env"] == "AZURE_API_KEY_EU"
    assert eu["options"] == {"api_version": "2024-10-21"}
    assert eu["input_cost_per_mtok"] == Decimal("2.5")  # litellm's price for the base model
    assert ca["input_cost_per_mtok"] == Decimal("2.5") and ca["output_cost_per_mtok"] == 10
    assert ca["timeout_s"] == 45
    cfg = FileConfig.model_validate(import_litellm(raw).config)
    assert [p.message for p in config_checks.problems(cfg)] == []
    notes = import_litellm(raw).notes
    assert any(n.startswith("not imported: model_list[*].litellm_params.rpm (") for n in notes)


def test_a_literal_key_is_not_copied_nor_shown_and_the_entry_is_named() -> None:
    raw = {
        "model_list": [
            {"model_name": "mini", "litellm_params": {"model": "openai/gpt-4o-mini",
                                                       "api_key": SECRET}},
            {"model_name": "mini", "litellm_params": {"model": "gpt-4o-mini"}},
        ],
        "general_settings": {"master_key": "sk-master-SECRET-999"},
    }  # fmt: skip
    imported = import_litellm(raw)
    text = render(imported.config, Path("config.yaml")) + "\n".join(imported.notes)
    assert SECRET not in text and "sk-master-SECRET-999" not in text
    first, second = imported.config["deployments"]
    assert first["api_key_env"] == "MINI_API_KEY"
    assert any("model_list[0] (mini): api_key is a literal key" in n for n in imported.notes)
    assert any("MINI_API_KEY" in n for n in imported.notes)
    # no key named: litellm reads OPENAI_API_KEY, which thriftgate's openai provider must name
    assert (second["name"], second["provider"], second["api_key_env"]) == (
        "mini-2", "openai", "OPENAI_API_KEY",
    )  # fmt: skip


def test_prices_per_token_are_exact_per_million_through_the_written_file(
    tmp_path: Path,
) -> None:
    # YAML reads 1e-6 (no dot) as a string; 0.1 + 0.2 style float error must not appear
    raw = parsed("""
model_list:
  - model_name: m
    litellm_params:
      model: openai/x
      api_base: http://127.0.0.1:9/v1
      input_cost_per_token: 1e-6
      output_cost_per_token: 0.0000003
      cache_read_input_token_cost: 3.0e-08
""")
    out = tmp_path / "tg.yaml"
    out.write_text(render(import_litellm(raw).config, Path("c.yaml")))
    dep = load_file_config(out).deployments[0]
    assert dep.input_cost_per_mtok == Decimal("1")
    assert dep.output_cost_per_mtok == Decimal("0.3")
    assert dep.cached_input_cost_per_mtok == Decimal("0.03")


def test_providers_people_use_map_to_thriftgate_providers() -> None:
    raw = parsed("""
model_list:
  - model_name: local-llama
    litellm_params: {model: hosted_vllm/meta-llama/Llama-3.1-8B, api_base: "http://vllm:8000/v1"}
  - model_name: qwen
    litellm_params: {model: ollama/qwen2.5, api_base: "http://localhost:11434"}
  - model_name: gemini-flash
    litellm_params: {model: gemini/gemini-2.0-flash, api_key: os.environ/GEMINI_API_KEY}
  - model_name: gemini-pro
    litellm_params: {model: vertex_ai/gemini-1.5-pro, vertex_project: my-proj,
                     vertex_location: us-central1}
  - model_name: claude
    litellm_params: {model: bedrock/anthropic.claude-3-haiku-20240307-v1:0,
                     aws_region_name: eu-west-1}
  - model_name: groq-llama
    litellm_params: {model: groq/llama-3.3-70b-versatile, api_key: os.environ/GROQ_API_KEY}
  - model_name: self-hosted
    litellm_params: {model: openai/my-model, api_base: "http://10.0.0.5:8080/v1"}
""")
    got = {n: (d["provider"], d["upstream_model"], d.get("api_base"), d.get("options"))
           for n, d in deps(raw).items()}  # fmt: skip
    assert got == {
        "local-llama": ("vllm", "meta-llama/Llama-3.1-8B", "http://vllm:8000/v1", None),
        "qwen": ("ollama", "qwen2.5", "http://localhost:11434", None),
        "gemini-flash": ("gemini", "gemini-2.0-flash", None, None),
        "gemini-pro": ("vertex_ai", "gemini-1.5-pro", None,
                       {"vertex_project": "my-proj", "vertex_location": "us-central1"}),
        "claude": ("bedrock", "anthropic.claude-3-haiku-20240307-v1:0", None,
                   {"aws_region_name": "eu-west-1"}),
        "groq-llama": ("groq", "llama-3.3-70b-versatile", None, None),
        "self-hosted": ("openai_compatible", "my-model", "http://10.0.0.5:8080/v1", None),
    }  # fmt: skip


def test_router_settings_map_or_are_listed_one_line_per_key() -> None:
    raw = parsed("""
model_list:
  - {model_name: a, litellm_params: {model: anthropic/claude-3-5-haiku-latest}}
router_settings:
  routing_strategy: latency-based-routing
  cooldown_time: 60
  allowed_fails: 3
  timeout: 30
  fallbacks: [{a: [b, c]}]
  redis_host: localhost
litellm_settings:
  success_callback: [langfuse]
  context_window_fallbacks: [{a: [b]}]
general_settings: {master_key: sk-1234, database_url: "postgresql://u:pw@h/db"}
""")
    imported = import_litellm(raw)
    assert imported.config["routing"] == {
        "cooldown_s": 60, "max_cooldown_s": 60, "failure_threshold": 4,
    }  # fmt: skip
    assert imported.config["deployments"][0]["timeout_s"] == 30
    notes = imported.notes
    assert (
        "not imported: router_settings.routing_strategy (thriftgate routes by cost and SLO)"
        in notes
    )
    for key in ("router_settings.redis_host", "litellm_settings.success_callback",
                "general_settings.master_key", "general_settings.database_url"):  # fmt: skip
        assert sum(n.startswith(f"not imported: {key}") for n in notes) == 1, key
    fallbacks = [n for n in notes if "fallbacks: a -> [b, c]" in n]
    assert len(fallbacks) == 1 and "thriftgate/auto" in fallbacks[0]
    assert any(n.startswith("litellm_settings.context_window_fallbacks: a -> [b]") for n in notes)
    assert not any("sk-1234" in n or "pw@" in n for n in notes)
    FileConfig.model_validate(imported.config)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"models": []}, "no model_list"),
        ({"model_list": [{"model_name": "a"}]}, "model_list[0] (a): litellm_params.model"),
        ({"model_list": [{"model_name": "a", "litellm_params": {"model": "mystery-model-x"}}]},
         "cannot tell the provider of model 'mystery-model-x'"),
        ({"model_list": [{"model_name": "a", "litellm_params": {
            "model": "openai/x", "api_base": "os.environ/TG_TEST_UNSET_BASE"}}]},
         "api_base is os.environ/TG_TEST_UNSET_BASE, which is not set"),
        ({"model_list": [{"model_name": "a", "litellm_params": {
            "model": "openai/x", "api_base": "http://h/v1", "input_cost_per_token": "cheap"}}]},
         "input_cost_per_token: should be a number"),
    ],
)  # fmt: skip
def test_a_file_that_is_not_a_usable_litellm_config_is_one_line_exit_1(
    tmp_path: Path, raw: dict[str, Any], message: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["config", "import-litellm", str(path)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    if message == "no model_list":
        with pytest.raises(ConfigError):
            import_litellm({"model_list": []})


def test_the_command_writes_only_a_config_the_gateway_accepts(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"  # openai_compatible without a usable api_base: refused
    bad.write_text("model_list:\n  - {model_name: a, litellm_params: {model: hosted_vllm/x}}\n")
    out = tmp_path / "out.yaml"
    result = CliRunner().invoke(app, ["config", "import-litellm", str(bad), "-o", str(out)])
    assert result.exit_code == 1 and "needs an api_base" in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]  # no temporary file left
    good = tmp_path / "good.yaml"
    good.write_text(
        "model_list:\n  - {model_name: a, litellm_params: {model: hosted_vllm/x, "
        f"api_base: 'http://127.0.0.1:9/v1', api_key: {SECRET}}}}}\n"
    )
    result = CliRunner().invoke(app, ["config", "import-litellm", str(good), "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert SECRET not in out.read_text() + result.stdout + result.stderr
    assert load_file_config(out).deployments[0].provider == "vllm"


def test_wildcard_entries_are_named_not_imported_and_custom_llm_provider_is_read() -> None:
    raw = parsed("""
model_list:
  - model_name: "*"
    litellm_params: {model: "*"}
  - model_name: "anthropic/*"
    litellm_params: {model: "anthropic/*", api_key: os.environ/ANTHROPIC_API_KEY}
  - model_name: internal
    litellm_params: {model: my-model, custom_llm_provider: openai, api_base: "http://h:1/v1"}
""")
    imported = import_litellm(raw)
    [dep] = imported.config["deployments"]
    assert (dep["provider"], dep["upstream_model"]) == ("openai_compatible", "my-model")
    wild = [n for n in imported.notes if "wildcard" in n]
    assert [n.split(":")[1].strip() for n in wild] == [
        "model_list[0] (*)",
        "model_list[1] (anthropic/*)",
    ]
    with pytest.raises(ConfigError, match="no entry to import"):
        import_litellm({"model_list": raw["model_list"][:2]})


def test_a_name_the_gateway_refuses_is_reported_without_the_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    entry = {"model_name": "m" * 201, "litellm_params": {"model": "anthropic/claude-3-5-haiku"}}
    path.write_text(yaml.safe_dump({"model_list": [entry]}))
    result = CliRunner().invoke(app, ["config", "import-litellm", str(path)])
    assert result.exit_code == 1
    assert "(the imported config): deployments.0.model" in result.stderr
    assert ".thriftgate-import-" not in result.stderr


@pytest.mark.parametrize(
    "settings",
    ["router_settings: {fallbacks: 5}", "litellm_settings: {context_window_fallbacks: gpt-4o}"],
)
def test_malformed_fallbacks_are_listed_not_a_crash(tmp_path: Path, settings: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "model_list:\n  - {model_name: a, litellm_params: {model: anthropic/claude-3-5-haiku}}\n"
        + settings
        + "\n"
    )
    result = CliRunner().invoke(app, ["config", "import-litellm", str(path)])
    assert result.exit_code == 0, result.stderr
    assert "provider: anthropic" in result.stdout


def test_the_litellm_file_is_not_overwritten_by_its_own_import(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    text = "model_list:\n  - {model_name: a, litellm_params: {model: anthropic/claude-3-5-haiku}}\n"
    path.write_text(text)
    result = CliRunner().invoke(app, ["config", "import-litellm", str(path), "-o", str(path)])
    assert result.exit_code == 1 and "is the LiteLLM file itself" in result.stderr
    assert path.read_text() == text


def test_os_environ_reads_the_files_own_environment_variables_without_showing_them() -> None:
    raw = parsed("""
environment_variables:
  AZURE_BASE_EU: https://eu.openai.azure.com
  AZURE_KEY_EU: azure-LITERAL-KEY-in-the-file
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o
      api_base: os.environ/AZURE_BASE_EU
      api_key: os.environ/AZURE_KEY_EU
""")
    imported = import_litellm(raw)
    [dep] = imported.config["deployments"]
    assert dep["api_base"] == "https://eu.openai.azure.com"
    assert dep["api_key_env"] == "AZURE_KEY_EU"
    text = render(imported.config, Path("c.yaml")) + "\n".join(imported.notes)
    assert "azure-LITERAL-KEY-in-the-file" not in text
    assert any("AZURE_KEY_EU is set in the LiteLLM file's environment_variables" in n
               for n in imported.notes)  # fmt: skip


def test_openais_key_variable_goes_to_openai_only() -> None:
    raw = parsed("""
model_list:
  - {model_name: a, litellm_params: {model: openai/gpt-4o, api_base: "https://api.openai.com/v1"}}
  - {model_name: b, litellm_params: {model: openai/llama, api_base: "http://10.1.2.3:8000/v1"}}
  - {model_name: c, litellm_params: {model: openai/x, api_base: "http://h/v1", api_key: lit}}
""")
    got = {n: d.get("api_key_env") for n, d in deps(raw).items()}
    assert got["a"] == "OPENAI_API_KEY"  # litellm's default: the request needs it
    assert got["b"] is None  # a self-hosted server is not sent the OpenAI key
    long_name = {"model_name": "n" * 150, "litellm_params": {"model": "openai/x",
                 "api_base": "http://h/v1", "api_key": "lit"}}  # fmt: skip
    [dep] = import_litellm({"model_list": [long_name]}).config["deployments"]
    assert len(dep["api_key_env"]) <= 64  # shown by the start-up checks when unset


def test_long_context_and_search_prices_are_imported_beside_configured_prices(
    tmp_path: Path,
) -> None:
    """Configured input/output prices leave litellm's map out: its long-context price
    (`*_above_200k_tokens`, which litellm's own calculator bills) and its web search price
    were listed as not imported, and the gateway billed a 300k-token prompt at half its price
    (hunt11 h111). An Azure deployment priced by its base_model kept neither either."""
    raw = parsed("""
model_list:
  - model_name: pro
    litellm_params:
      model: openai/gemini-2.5-pro
      api_base: http://127.0.0.1:9/v1
      input_cost_per_token: 1.25e-06
      output_cost_per_token: 1.0e-05
      input_cost_per_token_above_200k_tokens: 2.5e-06
      output_cost_per_token_above_200k_tokens: 1.5e-05
      cache_read_input_token_cost_above_200k_tokens: 2.5e-07
      cache_creation_input_token_cost_above_1hr: 6.0e-06
    model_info:
      search_context_cost_per_query: {search_context_size_medium: 0.035}
  - model_name: big
    litellm_params: {model: azure/prod-gpt-5-4, api_base: "https://x.openai.azure.com"}
    model_info: {base_model: gpt-5.4}
""")
    imported = import_litellm(raw)
    assert not any("above_200k" in n or "search_context" in n for n in imported.notes)
    out = tmp_path / "tg.yaml"
    out.write_text(render(imported.config, Path("c.yaml")))
    pro, big = load_file_config(out).deployments
    (tier,) = pro.long_context_prices
    assert tier.above_prompt_tokens == 200_000
    assert (tier.input_cost_per_mtok, tier.output_cost_per_mtok) == (Decimal("2.5"), 15)
    assert tier.cached_input_cost_per_mtok == Decimal("0.25")
    assert pro.cache_write_1h_input_cost_per_mtok == 6
    assert pro.web_search_usd_per_query == Decimal("0.035")
    (above,) = big.long_context_prices
    assert above.above_prompt_tokens == 272_000 and above.input_cost_per_mtok == 5


@pytest.mark.parametrize(
    "search",
    ["{search_context_size_low: 0.03, search_context_size_high: 0.05}", "0.03"],
)
def test_a_search_price_the_import_cannot_carry_is_listed_not_dropped(search: str) -> None:
    """thriftgate takes one price per search, the medium context's: a LiteLLM entry pricing
    only its low and high contexts (or writing one number) was dropped without a word, and the
    imported deployment billed its searches at nothing (hunt11 h117)."""
    raw = parsed(f"""
model_list:
  - model_name: searcher
    litellm_params:
      model: openai/gpt-4o-search-preview
      api_key: os.environ/OPENAI_API_KEY
      input_cost_per_token: 2.5e-06
      output_cost_per_token: 1.0e-05
      search_context_cost_per_query: {search}
""")
    imported = import_litellm(raw)
    assert "web_search_usd_per_query" not in imported.config["deployments"][0]
    (note,) = [n for n in imported.notes if "search_context_cost_per_query" in n]
    assert note.startswith("not imported") and "search_context_size_medium" in note, note


def test_prices_and_limits_not_imported_say_what_to_do_instead() -> None:
    """A reasoning or citation token price beside configured prices was listed as not imported
    with no word of what the gateway bills instead (the output price, so Qwen Plus thinking at
    $1.20 per 1M where litellm bills $4; citations nothing): they are imported now; and a
    deployment's tpm pointed at budgets, where thriftgate has per-tenant TPM limits (hunt11
    h117)."""
    raw = parsed("""
model_list:
  - model_name: qwen
    litellm_params:
      model: openai/qwen-plus
      api_key: os.environ/DASHSCOPE_API_KEY
      input_cost_per_token: 4.0e-07
      output_cost_per_token: 1.2e-06
      citation_cost_per_token: 2.0e-06
      tpm: 100000
    model_info:
      output_cost_per_reasoning_token: 4.0e-06
""")
    imported = import_litellm(raw)
    notes = imported.notes
    # since then carried as thriftgate's own fields (test_configured_part_prices.py)
    assert not [n for n in notes if "reasoning" in n or "citation" in n], notes
    [dep] = imported.config["deployments"]
    assert dep["reasoning_output_cost_per_mtok"] == 4 and dep["citation_input_cost_per_mtok"] == 2
    (tpm,) = [n for n in notes if n.startswith("not imported: model_list[*].litellm_params.tpm")]
    assert "--tpm" in tpm, tpm
