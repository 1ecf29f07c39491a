"""Typed settings: `THRIFTGATE_*` environment variables plus one YAML file of deployments.

This is the only module that reads the environment or the config file. Everything is validated
at start-up into frozen models; a bad key stops the process with a message naming the key.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///./thriftgate.db"
# Each worker is a whole gateway process: 2,000 of them brought a 2-core machine to a halt.
MAX_WORKERS = max(64, 4 * (os.cpu_count() or 1))


# A price per million tokens above this is a typo (1e30 cannot even be stored: the ledger's
# NUMERIC(20,10) overflows and every request's row is refused); today's dearest are ~$600.
MAX_USD_PER_MTOK = 1_000_000
MAX_USD_PER_HOUR = 1_000_000  # a local engine's hardware: a GPU node is ~$100 an hour
AUTO_MODEL = "thriftgate/auto"  # gateway/routing/catalog.py: what no deployment may be called


class ConfigError(Exception):
    """The settings or the YAML file are invalid; the message names the offending key."""


class TierPrice(BaseModel):
    """A provider service tier's prices (OpenAI's `flex`, `priority`), USD per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    input_cost_per_mtok: Decimal = Field(ge=0, le=MAX_USD_PER_MTOK)
    output_cost_per_mtok: Decimal = Field(ge=0, le=MAX_USD_PER_MTOK)
    cached_input_cost_per_mtok: Decimal | None = Field(default=None, ge=0, le=MAX_USD_PER_MTOK)


class LongContextPrice(BaseModel):
    """Prices for a request whose prompt has more than `above_prompt_tokens` tokens (Gemini 2.5
    Pro and Claude Sonnet 4 with 1M context above 200k): every token of it, the answer's too.
    Cache prices not given are the deployment's, scaled as its input price is."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    above_prompt_tokens: int = Field(ge=1, le=100_000_000)
    input_cost_per_mtok: Decimal = Field(ge=0, le=MAX_USD_PER_MTOK)
    output_cost_per_mtok: Decimal = Field(ge=0, le=MAX_USD_PER_MTOK)
    cached_input_cost_per_mtok: Decimal | None = Field(default=None, ge=0, le=MAX_USD_PER_MTOK)
    cache_write_input_cost_per_mtok: Decimal | None = Field(default=None, ge=0, le=MAX_USD_PER_MTOK)
    cache_write_1h_input_cost_per_mtok: Decimal | None = Field(
        default=None, ge=0, le=MAX_USD_PER_MTOK
    )


class DeploymentConfig(BaseModel):
    """One place a model can be served: a provider endpoint plus its prices."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    # the ledger's `deployment` and `model` columns are VARCHAR(200): a longer name made every
    # row of the deployment refused by the database (quarantined: served, never billed)
    name: str = Field(min_length=1, max_length=200)
    model: str = Field(min_length=1, max_length=200)
    provider: str = "openai_compatible"
    upstream_model: str | None = None
    api_base: str | None = None
    api_key_env: str | None = None
    input_cost_per_mtok: Decimal | None = Field(default=None, ge=0, le=MAX_USD_PER_MTOK)
    output_cost_per_mtok: Decimal | None = Field(default=None, ge=0, le=MAX_USD_PER_MTOK)
    cached_input_cost_per_mtok: Decimal | None = Field(default=None, ge=0, le=MAX_USD_PER_MTOK)
    cache_write_input_cost_per_mtok: Decimal | None = Field(default=None, ge=0, le=MAX_USD_PER_MTOK)
    cache_write_1h_input_cost_per_mtok: Decimal | None = Field(
        default=None, ge=0, le=MAX_USD_PER_MTOK
    )
    audio_input_cost_per_mtok: Decimal | None = Field(default=None, ge=0, le=MAX_USD_PER_MTOK)
    audio_output_cost_per_mtok: Decimal | None = Field(default=None, ge=0, le=MAX_USD_PER_MTOK)
    # Parts some providers price apart (else litellm's, where the input and output prices are
    # not configured; else reasoning at the output price, citations free, images as text).
    reasoning_output_cost_per_mtok: Decimal | None = Field(default=None, ge=0, le=MAX_USD_PER_MTOK)
    citation_input_cost_per_mtok: Decimal | None = Field(default=None, ge=0, le=MAX_USD_PER_MTOK)
    image_input_cost_per_mtok: Decimal | None = Field(default=None, ge=0, le=MAX_USD_PER_MTOK)
    image_output_cost_per_mtok: Decimal | None = Field(default=None, ge=0, le=MAX_USD_PER_MTOK)
    # By the tier's name as the upstream reports it ("flex", "priority"); they win over
    # litellm's, and are the only ones where the prices above are configured.
    service_tier_prices: dict[str, TierPrice] = Field(default_factory=dict)
    # Above a prompt length (per request); they win over litellm's `*_above_200k_tokens`.
    long_context_prices: tuple[LongContextPrice, ...] = ()
    # USD a web search (whatever its context size); else litellm's search_context_cost_per_query
    web_search_usd_per_query: Decimal | None = Field(default=None, ge=0, le=MAX_USD_PER_HOUR)
    # Router hints: cold-start latency model until live measurements arrive.
    ttft_ms: float | None = Field(default=None, ge=0)
    ms_per_token: float | None = Field(default=None, ge=0)
    timeout_s: float = Field(default=120.0, gt=0)
    max_concurrency: int | None = Field(default=None, ge=1)
    default: bool = False  # the group's default deployment (the "without routing" baseline)
    # Local engine only: hardware price, used with measured throughput to price tokens.
    hardware_usd_per_hour: Decimal | None = Field(default=None, ge=0, le=MAX_USD_PER_HOUR)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name", "model")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("model")
    @classmethod
    def _not_auto(cls, value: str) -> str:
        if value == AUTO_MODEL:
            raise ValueError(f"{AUTO_MODEL} is the gateway's own routing model, not a deployment's")
        return value

    @field_validator("long_context_prices")
    @classmethod
    def _one_price_per_threshold(
        cls, prices: tuple[LongContextPrice, ...]
    ) -> tuple[LongContextPrice, ...]:
        thresholds = [p.above_prompt_tokens for p in prices]
        if len(set(thresholds)) != len(thresholds):
            raise ValueError("two prices for the same above_prompt_tokens")
        return prices

    @property
    def served_model(self) -> str:
        return self.upstream_model or self.model

    def api_key(self) -> str | None:
        """The provider key, read from the named environment variable at call time."""
        if not self.api_key_env:
            return None
        return os.environ.get(self.api_key_env)


class TenantDefaults(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cache: bool = True
    compression: Literal["off", "lossless", "balanced", "aggressive"] = "off"


class AutoModelConfig(BaseModel):
    """`thriftgate/auto`: which models a tenant (or everyone) accepts as interchangeable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: tuple[str, ...] = ()


class RoutingConfig(BaseModel):
    """Router knobs (see gateway/routing/router.py `RouterTuning`); the defaults suit most."""

    # `.inf` passed the > 0 checks: an endless cool-down made the all-breakers-open 503 a 500
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    failure_threshold: int = Field(default=5, ge=1)  # consecutive failures that open a breaker
    cooldown_s: float = Field(default=5.0, gt=0)  # open -> half-open
    max_cooldown_s: float = Field(default=30.0, gt=0)  # cap of the doubling after failed probes
    latency_quantile: float = Field(default=0.9, gt=0.5, lt=1)  # the tail an SLO is judged on
    # true: a request with max_tokens is priced as if it used all of it; false (default): on
    # the share of that cap its answers have been seeing (the cap until 32 are seen)
    price_on_max_tokens: bool = False
    # when no deployment is predicted to meet an SLO, try one whose figures are this old (it may
    # have recovered from an incident) instead of the fastest; 0 turns probing off
    probe_after_s: float = Field(default=10.0, ge=0)
    stats_flush_interval_s: float = Field(default=30.0, gt=0)  # learned stats -> database

    @model_validator(mode="after")
    def _cooldown_within_cap(self) -> RoutingConfig:
        if self.cooldown_s > self.max_cooldown_s:
            raise ValueError(
                f"cooldown_s ({self.cooldown_s:g}) must not exceed max_cooldown_s "
                f"({self.max_cooldown_s:g})"
            )
        return self


class FileConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    deployments: tuple[DeploymentConfig, ...] = ()
    auto: AutoModelConfig = AutoModelConfig()
    routing: RoutingConfig = RoutingConfig()
    tenant_defaults: TenantDefaults = TenantDefaults()

    @field_validator("deployments")
    @classmethod
    def _unique_names(cls, deps: tuple[DeploymentConfig, ...]) -> tuple[DeploymentConfig, ...]:
        seen: set[str] = set()
        for dep in deps:
            if dep.name in seen:
                raise ValueError(f"duplicate deployment name {dep.name!r}")
            seen.add(dep.name)
        return deps


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


class Settings(BaseSettings):
    """Process settings. Pass one into `create_app()`; nothing reads the environment later."""

    # `inf` passed the > 0 checks: THRIFTGATE_KEY_CACHE_TTL_S=inf kept revoked keys working
    model_config = SettingsConfigDict(
        env_prefix="THRIFTGATE_", env_ignore_empty=True, extra="ignore", allow_inf_nan=False
    )

    database_url: str = DEFAULT_SQLITE_URL
    admin_key: SecretStr | None = None
    config: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=MAX_WORKERS)
    spool_dir: Path = Path("./spool")
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    # Rows are durable in the spool at once; this only sets how often they reach the database.
    ledger_flush_interval_s: float = Field(default=0.5, gt=0)
    # How often each process shares its RPM/TPM/in-flight counts (Postgres; limits_sync.py).
    rate_limit_sync_interval_s: float = Field(default=1.0, ge=0.05, le=60)
    key_cache_ttl_s: float = Field(default=5.0, ge=0)
    log_level: str = "info"
    migrate_on_start: bool = True
    # Serve the hot OpenAI POST routes on raw ASGI, ahead of the framework stack.
    fast_lane: bool = True
    # A stream whose client has taken no bytes for this long is stopped (api/disconnect.py).
    client_stall_timeout_s: float = Field(default=120.0, gt=0, le=86400)
    # A request's head must arrive whole this long after the connection opens (or the next
    # request begins), its body this long after it is first read, or the answer is a 408
    # (api/connections.py, api/guards.py): a client trickling either held its connection.
    request_read_timeout_s: float = Field(default=60.0, gt=0, le=86400)
    # Embedded default: when no config file is given, serve the bundled local model.
    embedded_local_model: bool = True
    # Budget policy while the database is unreachable: "fail-open" serves (and spools the
    # ledger), "fail-closed" refuses with 503.
    budget_db_down_policy: Literal["fail-open", "fail-closed"] = "fail-open"
    # A budget reservation counts for at least this long and is dropped within twice this, so
    # a crashed process's reservations free the budget (a running request's are carried on:
    # budgets.BudgetBook.hold). (1 s to 30 days: 1e-300 overflowed the reservation generation
    # and every budgeted request answered 500)
    budget_reservation_ttl_s: float = Field(default=60.0, ge=1, le=30 * 86400)
    # A request without max_tokens reserves its budget on this many answer tokens until its
    # model has answered 32 requests, then on the long end of those answers (limits.py).
    budget_uncapped_completion_tokens: int = Field(default=4096, ge=1, le=1_000_000)
    # /v1/responses output items kept for `item_reference` inputs (store: true)
    responses_items_ttl_s: float = Field(default=86_400.0, gt=0, le=30 * 86_400)
    responses_items_per_tenant: int = Field(default=100_000, ge=1)
    # store: true also keeps each response's conversation (its input) for previous_response_id,
    # retrieve and input_items; false keeps only output items (no prompt is written to disk)
    responses_store_conversations: bool = True
    # Raw ledger rows (one per request) older than this many days are pruned hourly; totals
    # stay in the rollups (accounting/retention.py). 0: every row is kept (the default).
    ledger_retention_days: int = Field(default=0, ge=0, le=36_500)
    # The hourly rollup (as many rows as the ledger where tenants are many and requests few)
    # kept this long, at least the ledger's days and the dashboard's week; 0: for ever.
    rollup_hourly_retention_days: int = Field(default=0, ge=0, le=36_500)
    retention_interval_s: float = Field(default=3600.0, ge=1, le=7 * 86_400)
    # Response cache: semantic lookups need the embedding model (the `local` extra); the ONNX
    # export of it is kept in cache_model_dir (default ~/.cache/thriftgate).
    cache_semantic: bool = True
    cache_model_dir: Path | None = None
    cache_embed_threads: int = Field(default=2, ge=1, le=256)
    cache_poll_interval_s: float = Field(default=1.0, gt=0)
    # Budget alerts (budget_alerts.py): a webhook (a Slack/Teams incoming webhook works as it
    # is) called once when a tenant's spend in its period crosses each of these percentages
    # of its budget; signed with the secret when one is set.
    budget_alert_webhook_url: SecretStr | None = None
    budget_alert_thresholds: str = "50,80,100"
    budget_alert_secret: SecretStr | None = None
    budget_alert_interval_s: float = Field(default=15.0, ge=1, le=86_400)

    @field_validator("rollup_hourly_retention_days")
    @classmethod
    def _hourly_outlives_the_ledger(cls, days: int, info: ValidationInfo) -> int:
        ledger_days = info.data.get("ledger_retention_days") or 0
        if days and not ledger_days:
            raise ValueError("needs THRIFTGATE_LEDGER_RETENTION_DAYS (the raw rows outlive it)")
        if days and days < max(ledger_days, 8):
            raise ValueError(
                f"must be at least {max(ledger_days, 8)}: the ledger's retention days, and the "
                "dashboard's hourly week"
            )
        return days

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("budget_alert_webhook_url")
    @classmethod
    def _http_webhook(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parts = urlsplit(value.get_secret_value().strip())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("budget_alert_thresholds")
    @classmethod
    def _percentages(cls, value: str) -> str:
        alert_thresholds(value)
        return value

    @property
    def budget_alert_percentages(self) -> tuple[int, ...]:
        return alert_thresholds(self.budget_alert_thresholds)

    @field_validator("admin_key")
    @classmethod
    def _usable_admin_key(cls, value: SecretStr | None) -> SecretStr | None:
        # A key with blanks around it cannot be typed back in a header: nobody could log in.
        if value is not None and value.get_secret_value() != value.get_secret_value().strip():
            raise ValueError("must not start or end with white space")
        return value

    def file_config(self) -> FileConfig:
        if self.config is None:
            return default_file_config() if self.embedded_local_model else FileConfig()
        return load_file_config(self.config)


def alert_thresholds(text: str) -> tuple[int, ...]:
    """ "50,80,100" (percent of the budget; "80%" too) -> (50, 80, 100)."""
    out = set()
    for part in text.replace(";", ",").split(","):
        part = part.strip().rstrip("%").strip()
        if not part:
            continue
        if not part.isdigit() or not 1 <= int(part) <= 1000:
            raise ValueError(
                f"{part!r} is not a percentage of the budget: give whole numbers from 1 to "
                "1000 separated by commas, e.g. 50,80,100"
            )
        out.add(int(part))
    if not out:
        raise ValueError("give at least one percentage, e.g. 50,80,100")
    return tuple(sorted(out))


def default_file_config() -> FileConfig:
    """No config file: one deployment, the bundled local model, so the first run needs nothing."""
    return FileConfig(
        deployments=(
            DeploymentConfig(
                name="local-smollm2",
                model="smollm2-135m",
                provider="local",
                input_cost_per_mtok=Decimal(0),
                output_cost_per_mtok=Decimal(0),
                default=True,
            ),
        )
    )


def load_file_config(path: Path) -> FileConfig:
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"config file {path} is a directory, not a YAML file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:  # unreadable: permissions, an I/O error
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping")
    try:
        return FileConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"config file {path}: {_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        message = _unknown_key(err["loc"]) if err["type"] == "extra_forbidden" else err["msg"]
        if err["type"] == "tuple_type":  # the YAML reader's word, not Python's
            message = "should be a list (one '- ' item per entry)"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


SECTIONS: dict[str, type[BaseModel]] = {
    "deployments": DeploymentConfig,
    "auto": AutoModelConfig,
    "routing": RoutingConfig,
    "tenant_defaults": TenantDefaults,
}


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    """`timeout: 30` said "Extra inputs are not permitted": name the key it resembles."""
    import difflib

    model = FileConfig if len(loc) == 1 else SECTIONS.get(str(loc[0]))
    keys = list(model.model_fields) if model is not None else []
    close = difflib.get_close_matches(str(loc[-1]), keys, n=1, cutoff=0.6)
    return "unknown key" + (f" (did you mean {close[0]}?)" if close else "")
