"""Settings and config values that were accepted and then broke serving are refused at start,
in one message naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from gateway.settings import ConfigError, Settings, load_file_config

GOOD = {"name": "a", "model": "m", "api_base": "http://127.0.0.1:9/v1"}
MODEL = "deployments.0.model"
PRICE = "1000000"


def load(tmp_path: Path, config: dict[str, object]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    load_file_config(path)


@pytest.mark.parametrize(
    ("config", "where", "message"),
    [
        ({"deployments": [{**GOOD, "model": "thriftgate/auto"}]}, MODEL, "routing model"),
        ({"deployments": [{**GOOD, "model": " "}]}, MODEL, "blank"),
        ({"deployments": [{**GOOD, "input_cost_per_mtok": 1e30}]}, "input_cost_per_mtok", PRICE),
        ({"deployments": [{**GOOD, "output_cost_per_mtok": "1e7"}]}, "output_cost_per_mtok", PRICE),
        ({"routing": {"cooldown_s": 60, "max_cooldown_s": 30}}, "routing", "max_cooldown_s"),
    ],
)  # fmt: skip
def test_a_config_that_breaks_serving_is_refused(
    tmp_path: Path, config: dict[str, object], where: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, config)
    assert where in str(info.value) and message in str(info.value), str(info.value)


def test_sane_values_still_load(tmp_path: Path) -> None:
    load(
        tmp_path,
        {
            "deployments": [{**GOOD, "input_cost_per_mtok": 600, "output_cost_per_mtok": 0}],
            "routing": {"cooldown_s": 30, "max_cooldown_s": 30},
        },
    )


@pytest.mark.parametrize("ttl", ["1e-300", "0.5", "1e12"])
def test_a_reservation_lifetime_out_of_range_is_refused(
    monkeypatch: pytest.MonkeyPatch, ttl: str
) -> None:
    monkeypatch.setenv("THRIFTGATE_BUDGET_RESERVATION_TTL_S", ttl)
    with pytest.raises(ValidationError, match="budget_reservation_ttl_s"):
        Settings()


def test_a_sane_reservation_lifetime_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTGATE_BUDGET_RESERVATION_TTL_S", "3")
    assert Settings().budget_reservation_ttl_s == 3


LONG = "x" * 201  # the ledger's `deployment` and `model` columns are VARCHAR(200)
ENDLESS = {"cooldown_s": float("inf"), "max_cooldown_s": float("inf")}


@pytest.mark.parametrize(
    ("config", "where", "message"),
    [
        ({"deployments": [{**GOOD, "name": LONG}]}, "deployments.0.name", "200 characters"),
        ({"deployments": [{**GOOD, "model": LONG}]}, MODEL, "200 characters"),
        ({"routing": ENDLESS}, "routing.cooldown_s", "finite number"),
        ({"routing": ENDLESS}, "routing.max_cooldown_s", "finite number"),
        ({"routing": {"stats_flush_interval_s": float("inf")}}, "stats_flush_interval_s", "finite"),
        ({"routing": {"probe_after_s": float("inf")}}, "routing.probe_after_s", "finite number"),
        # the request's deadline is its deployments' longest timeout: one endless made all so
        ({"deployments": [{**GOOD, "timeout_s": float("inf")}]}, "timeout_s", "finite number"),
        ({"deployments": [{**GOOD, "ttft_ms": float("nan")}]}, "ttft_ms", "finite number"),
    ],
)  # fmt: skip
def test_a_name_the_ledger_cannot_hold_or_an_endless_knob_is_refused(
    tmp_path: Path, config: dict[str, object], where: str, message: str
) -> None:
    """A deployment named (or serving a model named) past 200 characters was served and never
    billed: the database refused each of its ledger rows (quarantined). `cooldown_s: .inf`
    passed the > 0 check and made the all-breakers-open 503 a 500 (int(inf))."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, config)
    assert where in str(info.value) and message in str(info.value), str(info.value)


def test_names_of_200_characters_still_load(tmp_path: Path) -> None:
    longest = "y" * 200
    load(tmp_path, {"deployments": [{**GOOD, "name": longest, "model": longest}]})


@pytest.mark.parametrize(
    "var",
    [
        "THRIFTGATE_LEDGER_FLUSH_INTERVAL_S",  # rows waited in the spool for a pile of 100
        "THRIFTGATE_KEY_CACHE_TTL_S",  # a revoked key worked for the life of the process
        "THRIFTGATE_CACHE_POLL_INTERVAL_S",
        "THRIFTGATE_RESPONSES_ITEMS_TTL_S",
    ],
)
@pytest.mark.parametrize("value", ["inf", "Infinity", "nan"])
def test_an_endless_interval_in_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    """`inf` passed the > 0 and >= 0 checks of the environment's intervals (hunt9 h1)."""
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError, match=var.removeprefix("THRIFTGATE_").lower()):
        Settings()


def test_a_hardware_price_the_ledger_cannot_hold_is_refused(tmp_path: Path) -> None:
    """`hardware_usd_per_hour` had no upper bound where the per-token prices have one: 1e30
    priced a token past what the ledger's NUMERIC(20,10) holds (hunt9 h1)."""
    local = {"name": "l", "model": "m", "provider": "local"}
    with pytest.raises(ConfigError, match="hardware_usd_per_hour"):
        load(tmp_path, {"deployments": [{**local, "hardware_usd_per_hour": 1e30}]})
    load(tmp_path, {"deployments": [{**local, "hardware_usd_per_hour": 98.32}]})  # 8 x H100


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"deployments": [{**GOOD, "timeout": 30}]},
            "deployments.0.timeout: unknown key (did you mean timeout_s?)",
        ),
        (
            {"deployments": [{**GOOD, "input_cost_per_mtoks": 1}]},
            "deployments.0.input_cost_per_mtoks: unknown key (did you mean input_cost_per_mtok?)",
        ),
        ({"deployment": [GOOD]}, "deployment: unknown key (did you mean deployments?)"),
        ({"routing": {"failure_treshold": 3}}, "did you mean failure_threshold?"),
        ({"deployments": [{**GOOD, "zzz": 1}]}, "deployments.0.zzz: unknown key"),
        ({"deployments": GOOD}, "deployments: should be a list"),  # "a valid tuple"
        ({"auto": {"models": "m"}}, "auto.models: should be a list"),
    ],
)
def test_a_misspelt_config_key_is_named_with_the_key_it_resembles(
    tmp_path: Path, config: dict[str, object], message: str
) -> None:
    """`timeout: 30` said "Extra inputs are not permitted" (hunt9 h1)."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, config)
    assert message in str(info.value), str(info.value)
