"""Start-up checks of values that look wrong: a key pasted where its variable's name goes (never
echoed), and an `api_base` that is not an http(s) URL (every request would 502)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from gateway import config_checks
from gateway.settings import ConfigError, FileConfig

PASTED_KEYS = ["sk-live-1234567890abcdefghij", "$MOCK_KEY", "${MOCK_KEY}", "key with spaces"]


def config(**dep: Any) -> FileConfig:
    base = {"name": "a", "model": "m", "api_base": "http://127.0.0.1:9/v1"}
    return FileConfig.model_validate({"deployments": [base | dep]})


def messages(cfg: FileConfig) -> list[tuple[bool, str]]:
    return [(p.fatal, p.message) for p in config_checks.problems(cfg)]


@pytest.mark.parametrize("value", PASTED_KEYS)
def test_a_value_that_is_no_variable_name_stops_the_start_without_being_echoed(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as caught:
        config_checks.check(config(api_key_env=value))
    said = str(caught.value) + " ".join(r.getMessage() for r in caplog.records)
    assert value not in said and "api_key_env" in said and "not the key" in said


@pytest.mark.parametrize("value", ["gsk_abcdEFGH1234567890xyz", "lower_case_name"])
def test_an_unset_name_that_may_be_a_key_is_a_warning_without_it(value: str) -> None:
    found = messages(config(api_key_env=value))
    assert len(found) == 1 and found[0][0] is False
    assert value not in found[0][1] and "not set" in found[0][1]


def test_an_unset_conventional_name_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TG_TEST_UNSET_KEY_VAR", raising=False)
    assert messages(config(api_key_env="TG_TEST_UNSET_KEY_VAR")) == [
        (
            False,
            "deployment 'a': api_key_env 'TG_TEST_UNSET_KEY_VAR' is not set; its requests go "
            "out without a key",
        )
    ]


def test_a_set_variable_of_any_name_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("tg-odd-name", "sk-x")
    assert messages(config(api_key_env="tg-odd-name")) == []


@pytest.mark.parametrize(
    "base", ["127.0.0.1:18110/v1", "${MOCK_BASE}", "http://${HOST}/v1", "ftp://host/v1",
             "http://", "localhost"],
)  # fmt: skip
def test_an_api_base_that_is_no_http_url_stops_the_start(base: str) -> None:
    found = messages(config(api_base=base))
    assert [fatal for fatal, _ in found] == [True]
    assert "api_base must be an http(s) URL" in found[0][1]


@pytest.mark.parametrize("base", ["http://127.0.0.1:9/v1", "https://api.example.com/v1"])
def test_an_http_api_base_passes(base: str) -> None:
    assert messages(config(api_base=base)) == []
