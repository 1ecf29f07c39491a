"""Start-up checks: a config that cannot work stops the start; one that may be wrong is named."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from gateway import config_checks
from gateway.settings import ConfigError, FileConfig

KEY_ENV = "TG_TEST_CONFIG_CHECKS_KEY"


def config(*deps: dict[str, Any], **rest: Any) -> FileConfig:
    base = {"api_base": "http://127.0.0.1:9/v1"}
    return FileConfig.model_validate(
        {"deployments": [{"name": f"d{i}", "model": "m"} | base | d for i, d in enumerate(deps)]}
        | rest
    )


def found(cfg: FileConfig) -> list[tuple[bool, str]]:
    return [(p.fatal, p.message) for p in config_checks.problems(cfg)]


def test_a_sound_config_has_no_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-x")
    cfg = config(
        {"default": True, "api_key_env": KEY_ENV},
        {"provider": "groq", "api_base": None},  # a provider with a known base
        {"provider": "together", "upstream_model": "x"},  # our alias of litellm's together_ai
        {"provider": "anthropic", "api_base": None},
        {"provider": "local", "api_base": None},
        auto={"models": ["m"]},
    )
    assert found(cfg) == []


@pytest.mark.parametrize(
    ("dep", "message"),
    [
        ({"provider": "openai-compatible"}, "unknown provider 'openai-compatible'"),
        ({"provider": "nosuchprovider"}, "unknown provider 'nosuchprovider'"),
        ({"api_base": None}, "provider 'openai_compatible' needs an api_base"),
        ({"provider": "vllm", "api_base": None}, "provider 'vllm' needs an api_base"),
    ],
)
def test_what_cannot_work_stops_the_start(dep: dict[str, Any], message: str) -> None:
    cfg = config(dep)
    assert [fatal for fatal, _ in found(cfg)] == [True]
    with pytest.raises(ConfigError, match=message):
        config_checks.check(cfg)


def test_two_defaults_in_one_group_stop_the_start() -> None:
    cfg = config({"default": True}, {"default": True}, {"model": "other", "default": True})
    with pytest.raises(ConfigError, match=r"model 'm' has more than one default"):
        config_checks.check(cfg)


def test_what_may_be_a_mistake_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="thriftgate.config")
    config_checks.check(
        config({"api_key_env": "TG_TEST_NOT_SET_ANYWHERE"}, auto={"models": ["ghost"]})
    )
    config_checks.check(FileConfig())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3, warnings
    assert "'TG_TEST_NOT_SET_ANYWHERE' is not set" in warnings[0]
    assert "auto.models names 'ghost'" in warnings[1]
    assert "no deployments" in warnings[2]


def test_the_local_provider_without_the_local_extra_stops_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = config_checks.importlib.util.find_spec
    monkeypatch.setattr(
        config_checks.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "torch" else real(name, *a),
    )
    problems = found(config({"provider": "local", "api_base": None}))
    assert len(problems) == 1 and problems[0][0] and "local extra" in problems[0][1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"modle": "/srv/models/qwen"}, "options.modle: Extra inputs are not permitted"),
        ({"speculative": "medusa"}, "options.speculative.method: Input should be"),
        ({"model": "/nonexistent/qwen"}, "/nonexistent/qwen is not a local Hugging Face model"),
        (
            {"speculative": {"method": "draft", "draft_model": "/nonexistent/draft"}},
            "options.speculative.draft_model: /nonexistent/draft is not a local Hugging Face",
        ),
    ],
)
def test_a_local_deployment_whose_engine_cannot_start_stops_the_start(
    options: dict[str, Any], message: str
) -> None:
    """Bad engine options (a misspelt key, a model path that is not there) started the gateway
    with a warning and /readyz "ok"; every request to the deployment then failed (hunt9 h1)."""
    cfg = config({"name": "loc", "provider": "local", "api_base": None, "options": options})
    problems = found(cfg)
    assert len(problems) == 1 and problems[0][0], problems
    assert problems[0][1].startswith("deployment 'loc': ") and message in problems[0][1]
    assert "\n" not in problems[0][1]  # one line at start-up


@pytest.mark.parametrize(
    "api_base",
    [
        "https://api.groq.com/openai/v1/chat/completions",
        "http://127.0.0.1:8100/v1/completions/",
        "http://127.0.0.1:9/v1/responses",
    ],
)
def test_an_endpoint_given_as_api_base_stops_the_start(api_base: str) -> None:
    """The URL a provider's docs show for curl (`.../v1/chat/completions`) pasted as api_base
    was served as `.../chat/completions/chat/completions`: a 404 on every request (hunt9 h1)."""
    problems = found(config({"name": "groq", "api_base": api_base}))
    assert len(problems) == 1 and problems[0][0], problems
    assert problems[0][1].startswith("deployment 'groq': api_base is the base URL"), problems
    assert found(config({"api_base": "http://127.0.0.1:9/openai/v1"})) == []


def test_a_model_cache_the_bundled_model_cannot_be_converted_into_stops_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bundled SmolLM2 is converted once into THRIFTGATE_MODEL_CACHE: one that cannot be
    created started the gateway, /readyz said ok, and every request was a 502 (hunt9 h1)."""
    monkeypatch.setenv("THRIFTGATE_MODEL_CACHE", "/proc/thriftgate-models")
    problems = found(config({"name": "loc", "provider": "local", "api_base": None}))
    assert len(problems) == 1 and problems[0][0], problems
    assert problems[0][1].startswith(
        "deployment 'loc': the bundled model is converted once into '/proc/thriftgate-models/"
    ), problems
    assert "THRIFTGATE_MODEL_CACHE" in problems[0][1]


def test_azure_without_its_endpoint_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """`provider: azure` with no api_base started, and every request was a 502 (hunt9 h1)."""
    monkeypatch.delenv("AZURE_API_BASE", raising=False)
    cfg = FileConfig.model_validate(
        {"deployments": [{"name": "az", "model": "m", "provider": "azure", "upstream_model": "x"}]}
    )
    assert any(fatal and "needs an api_base" in msg for fatal, msg in found(cfg))
    monkeypatch.setenv("AZURE_API_BASE", "https://r.openai.azure.com")  # litellm reads it
    assert not any("api_base" in msg for _, msg in found(cfg))


def test_options_a_provider_would_ignore_stop_the_start() -> None:
    # `options: {api_version: ...}` misspelt, or given to a provider that reads none, was
    # ignored in silence: every request went out on litellm's default api-version
    for dep, message in (
        ({"provider": "azure", "api_base": "https://r.openai.azure.com",
          "options": {"apiversion": "2024-10-21"}}, "options.apiversion: not a setting"),
        ({"provider": "openai_compatible", "api_base": "http://h/v1",
          "options": {"api_version": "2024-10-21"}}, "would be ignored"),
    ):  # fmt: skip
        config = FileConfig.model_validate({"deployments": [{"name": "d", "model": "m", **dep}]})
        with pytest.raises(ConfigError, match=message):
            config_checks.check(config)
    ok = {"provider": "azure", "api_base": "https://r.openai.azure.com",
          "options": {"api_version": "2024-10-21"}}  # fmt: skip
    config_checks.check(
        FileConfig.model_validate({"deployments": [{"name": "d", "model": "m", **ok}]})
    )


def test_vertex_ai_without_google_auth_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_checks, "_installed", lambda module: module != "google.auth")
    dep = {"name": "v", "model": "m", "provider": "vertex_ai", "upstream_model": "gemini-2.5-flash"}
    config = FileConfig.model_validate({"deployments": [dep]})
    with pytest.raises(ConfigError, match="pip install google-auth"):
        config_checks.check(config)
