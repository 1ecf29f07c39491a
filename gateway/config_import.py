"""`thriftgate config import-litellm`: a LiteLLM proxy `config.yaml` as a thriftgate config.

One deployment per `model_list` entry; entries sharing a `model_name` form one group, which the
router spreads across (LiteLLM's load balancing). What has no equivalent is named in `notes`,
one line per key, and never with its value: LiteLLM files carry keys (`api_key: sk-...`,
`master_key`, `database_url`) that must not reach the output or a terminal.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from gateway.settings import ConfigError

ENV_PREFIX = "os.environ/"
MILLION = Decimal(1_000_000)

# litellm's per-token prices -> thriftgate's per-million ones
PRICES = {
    "input_cost_per_token": "input_cost_per_mtok",
    "output_cost_per_token": "output_cost_per_mtok",
    "cache_read_input_token_cost": "cached_input_cost_per_mtok",
    "cache_creation_input_token_cost": "cache_write_input_cost_per_mtok",
    "input_cost_per_audio_token": "audio_input_cost_per_mtok",
    "output_cost_per_audio_token": "audio_output_cost_per_mtok",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h_input_cost_per_mtok",
    "output_cost_per_reasoning_token": "reasoning_output_cost_per_mtok",
    "citation_cost_per_token": "citation_input_cost_per_mtok",
    "input_cost_per_image_token": "image_input_cost_per_mtok",
    "output_cost_per_image_token": "image_output_cost_per_mtok",
}
# a long-context price: `input_cost_per_token_above_200k_tokens` and its output / cache kin
LONG_CONTEXT = re.compile(
    r"(input_cost_per_token|output_cost_per_token|cache_read_input_token_cost|"
    r"cache_creation_input_token_cost)_above_(\d+)(k?)_tokens"
)
LONG_FIELDS = {
    "input_cost_per_token": "input_cost_per_mtok",
    "output_cost_per_token": "output_cost_per_mtok",
    "cache_read_input_token_cost": "cached_input_cost_per_mtok",
    "cache_creation_input_token_cost": "cache_write_input_cost_per_mtok",
}
SEARCH = "search_context_cost_per_query"
OPTIONS = ("api_version", "vertex_project", "vertex_location", "aws_region_name")
# thriftgate's own OpenAI-compatible providers, by litellm's prefix, with the key variable
# litellm reads when the entry names none
OWN = {"openai": "OPENAI_API_KEY", "groq": "GROQ_API_KEY"}
# litellm reads these itself (as thriftgate's litellm providers do): nothing to carry over
READ_FROM_ENV = {
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "aws_session_token": "AWS_SESSION_TOKEN",
    "vertex_credentials": "GOOGLE_APPLICATION_CREDENTIALS",
}
HANDLED = {
    "model",
    "custom_llm_provider",
    "api_key",
    "api_base",
    "timeout",
    "max_parallel_requests",
    *OPTIONS,
    *PRICES,
}

WHY = {
    "rpm": "thriftgate limits requests per tenant: thriftgate tenant create --rpm",
    "tpm": "thriftgate limits tokens per tenant: thriftgate tenant create --tpm",
    "stream_timeout": "timeout_s also bounds each wait for a stream's next chunk",
    "routing_strategy": "thriftgate routes by cost and SLO",
    "num_retries": "thriftgate tries the group's next deployment on a failure",
    "retry_policy": "thriftgate tries the group's next deployment on a failure",
    "model_group_alias": "name each deployment's model as clients send it",
    "master_key": "set THRIFTGATE_ADMIN_KEY; clients get keys from thriftgate key create",
    "database_url": "set THRIFTGATE_DATABASE_URL",
    "cache": "thriftgate caches responses per tenant (tenant_defaults.cache)",
    "drop_params": "thriftgate drops what a provider cannot take, or refuses it with a 400",
    "environment_variables": "set them in the gateway's environment",
    "litellm_credential_name": "give the deployment the credential's api_key_env and api_base",
    "credential_list": "give each deployment its api_key_env and api_base",
    "include": "import each included file's model_list too",
    "weight": "thriftgate routes by cost and SLO",
    "order": "thriftgate routes by cost and SLO; a group falls back within itself",
}


@dataclass
class Imported:
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    # the LiteLLM file's environment_variables (LiteLLM sets them at start): os.environ/ reads
    # them first; their values are never written or shown
    file_env: dict[str, str] = field(default_factory=dict)


def read_litellm(path: Path) -> dict[str, Any]:
    """The LiteLLM file as a mapping; ConfigError (one line) when it cannot be one."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path} is a directory, not a LiteLLM config.yaml") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("model_list"), list):
        raise ConfigError(f"{path} is not a LiteLLM proxy config: it has no model_list list")
    return raw


def import_litellm(raw: dict[str, Any]) -> Imported:
    variables = raw.get("environment_variables")
    out = Imported({})
    if isinstance(variables, dict):
        out.file_env = {str(k): str(v) for k, v in variables.items() if v is not None}
    skipped: dict[str, str] = {}  # key path -> why it is not imported
    default_timeout = _default_timeout(raw, out)
    deployments: list[dict[str, Any]] = []
    names: set[str] = set()
    for i, entry in enumerate(raw["model_list"]):
        if _wildcard(entry):
            out.notes.append(
                f"not imported: model_list[{i}] ({entry['model_name']}): a wildcard entry "
                "(thriftgate serves the models it lists: give each model its own deployment)"
            )
            continue
        dep = _deployment(i, entry, out, skipped, names)
        if "timeout_s" not in dep and default_timeout is not None:
            dep["timeout_s"] = default_timeout
        deployments.append(dep)
    if not deployments:
        raise ConfigError("model_list has no entry to import (wildcard entries are not imported)")
    out.config["deployments"] = deployments
    routing = _routing(raw.get("router_settings"), skipped)
    if routing:
        out.config["routing"] = routing
    for section in ("router_settings", "litellm_settings"):
        settings = raw.get(section)
        if isinstance(settings, dict):
            _fallbacks(section, settings, out)
            for key in settings:
                if f"{section}.{key}" not in HANDLED_SETTINGS:
                    skipped.setdefault(f"{section}.{key}", WHY.get(key, ""))
    general = raw.get("general_settings")
    for key in general if isinstance(general, dict) else ():
        skipped.setdefault(f"general_settings.{key}", WHY.get(key, ""))
    for key in raw:
        if key not in ("model_list", "router_settings", "litellm_settings", "general_settings"):
            skipped.setdefault(key, WHY.get(key, ""))
    out.notes += [f"not imported: {k}" + (f" ({why})" if why else "") for k, why in skipped.items()]
    return out


HANDLED_SETTINGS = {
    "router_settings.cooldown_time",
    "router_settings.allowed_fails",
    "router_settings.timeout",
    "litellm_settings.request_timeout",
    *(f"{s}.{k}" for s in ("router_settings", "litellm_settings")
      for k in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks",
                "default_fallbacks")),
}  # fmt: skip


def _wildcard(entry: Any) -> bool:
    """`model_name: "*"` / `model: openai/*`: LiteLLM passes any model name through."""
    if not isinstance(entry, dict) or not isinstance(entry.get("model_name"), str):
        return False
    params = entry.get("litellm_params")
    model = params.get("model") if isinstance(params, dict) else None
    return "*" in entry["model_name"] or (isinstance(model, str) and model.endswith("*"))


def _default_timeout(raw: dict[str, Any], out: Imported) -> float | None:
    for section, key in (("router_settings", "timeout"), ("litellm_settings", "request_timeout")):
        settings = raw.get(section)
        if isinstance(settings, dict) and settings.get(key) is not None:
            return _seconds(settings[key], f"{section}.{key}")
    return None


def _seconds(value: Any, where: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: should be a number of seconds") from None
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"{where}: should be a positive number of seconds")
    return seconds


def _deployment(
    i: int, entry: Any, out: Imported, skipped: dict[str, str], names: set[str]
) -> dict[str, Any]:
    where = f"model_list[{i}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: should be a mapping with model_name and litellm_params")
    model = entry.get("model_name")
    params = entry.get("litellm_params")
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"{where}: model_name is missing or not a string")
    if not isinstance(params, dict) or not isinstance(params.get("model"), str):
        raise ConfigError(f"{where} ({model}): litellm_params.model is missing or not a string")
    model_info = entry.get("model_info")
    info: dict[str, Any] = model_info if isinstance(model_info, dict) else {}
    name = _unique(str(info.get("id") or model), names)
    where = f"{where} ({name})"
    api_base = _env_value(params.get("api_base"), where, "api_base", out)
    custom = params.get("custom_llm_provider")
    litellm_model = f"{custom}/{params['model']}" if isinstance(custom, str) else params["model"]
    provider, upstream = _provider(litellm_model, api_base, where)
    dep: dict[str, Any] = {"name": name, "model": model, "provider": provider}
    dep["upstream_model"] = upstream
    if api_base is not None and not (provider == "azure" and api_base == ""):
        dep["api_base"] = api_base
    key_env = _key_env(params.get("api_key"), provider, dep.get("api_base"), name, where, out)
    if key_env:
        dep["api_key_env"] = key_env
    dep.update(_prices({**info, **params}, where))
    if "input_cost_per_mtok" not in dep and isinstance(info.get("base_model"), str):
        dep.update(_base_model_prices(info["base_model"]))
    for section, values in (("litellm_params", params), ("model_info", info)):
        if values.get(SEARCH) is not None and "web_search_usd_per_query" not in dep:
            # one price a search here: a table without the medium context's (or a bare
            # number) was dropped without a word, and the searches billed at nothing
            skipped.setdefault(
                f"model_list[*].{section}.{SEARCH}",
                "thriftgate takes one price a search, its search_context_size_medium; "
                "set web_search_usd_per_query",
            )
    if params.get("timeout") is not None:
        dep["timeout_s"] = _seconds(params["timeout"], f"{where}: litellm_params.timeout")
    if params.get("max_parallel_requests") is not None:
        limit = params["max_parallel_requests"]
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ConfigError(f"{where}: max_parallel_requests should be a positive whole number")
        dep["max_concurrency"] = limit
    options = {
        k: _env_value(params[k], where, k, out) for k in OPTIONS if params.get(k) is not None
    }
    if options:
        dep["options"] = {k: str(v) for k, v in options.items()}
    for key in params:
        if key in READ_FROM_ENV:
            if not str(params[key]).startswith(ENV_PREFIX):
                out.notes.append(
                    f"{where}: litellm_params.{key} is a literal secret; it is not copied: "
                    f"set {READ_FROM_ENV[key]} in the gateway's environment"
                )
            skipped.setdefault(
                f"model_list[*].litellm_params.{key}",
                f"litellm reads {READ_FROM_ENV[key]} from the environment",
            )
        elif key not in HANDLED and not _is_price(key):
            skipped.setdefault(f"model_list[*].litellm_params.{key}", WHY.get(key, ""))
    for key in entry:
        if key not in ("model_name", "litellm_params", "model_info"):
            skipped.setdefault(f"model_list[*].{key}", WHY.get(key, ""))
    for key in info:
        if key not in ("id", "base_model") and not _is_price(key):
            skipped.setdefault(f"model_list[*].model_info.{key}", WHY.get(key, ""))
    return dep


def _unique(base: str, names: set[str]) -> str:
    name, n = base[:190], 1
    while name in names:
        n += 1
        name = f"{base[:190]}-{n}"
    names.add(name)
    return name


def _env_value(value: Any, where: str, key: str, out: Imported) -> Any:
    """`os.environ/NAME` is read when the file is imported (thriftgate's config values are not
    expanded), except AZURE_API_BASE, which litellm reads itself."""
    if not (isinstance(value, str) and value.startswith(ENV_PREFIX)):
        return value
    variable = value.removeprefix(ENV_PREFIX)
    if key == "api_base" and variable == "AZURE_API_BASE":
        return ""
    found = out.file_env.get(variable) or os.environ.get(variable)
    if not found:
        raise ConfigError(
            f"{where}: {key} is {value}, which is not set here; set it and import again, or "
            "write the value in the file (thriftgate does not expand config values)"
        )
    return found


def _provider(model: str, api_base: str | None, where: str) -> tuple[str, str]:
    prefix, _, rest = model.partition("/")
    if not rest or prefix not in _litellm_providers():
        prefix, rest = _inferred(model, where), model
    if prefix == "openai" and api_base:
        return "openai_compatible", rest
    if prefix == "hosted_vllm":
        return "vllm", rest
    if prefix in ("custom_openai", "text-completion-openai") and api_base:
        return "openai_compatible", rest
    return prefix, rest


def _inferred(model: str, where: str) -> str:
    """An unprefixed model (`gpt-4o`): litellm finds its provider in its price map."""
    import litellm

    known = litellm.model_cost.get(model, {}).get("litellm_provider")
    if isinstance(known, str):
        return known
    if model.startswith("claude"):
        return "anthropic"
    raise ConfigError(
        f"{where}: cannot tell the provider of model {model!r}; write it as provider/model "
        "(openai/..., anthropic/...)"
    )


def _litellm_providers() -> set[str]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    return {str(getattr(p, "value", p)) for p in litellm.provider_list}


def _key_env(
    value: Any, provider: str, api_base: str | None, name: str, where: str, out: Imported
) -> str | None:
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        variable = value.removeprefix(ENV_PREFIX).strip()
        if not variable:
            raise ConfigError(f"{where}: api_key is os.environ/ without a variable name")
        if variable in out.file_env:
            out.notes.append(
                f"{where}: its key's variable {variable} is set in the LiteLLM file's "
                "environment_variables, which are not copied: set it in the gateway's environment"
            )
        return variable
    if value is None or value == "":
        # litellm's own default (litellm providers read theirs); OpenAI's key goes to OpenAI
        # only, not to every OpenAI-compatible server litellm would also send it to
        at_openai = urlsplit(api_base or "").hostname == "api.openai.com"
        return OWN.get("openai" if at_openai else provider)
    variable = re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_")[:56] + "_API_KEY"
    if not re.match(r"[A-Z_]", variable):
        variable = "_" + variable
    out.notes.append(
        f"{where}: api_key is a literal key; it is not copied into the output: put it in the "
        f"environment variable {variable} (the output names it as api_key_env)"
    )
    return variable


def _per_million(value: Any, where: str) -> Decimal:
    try:
        price = Decimal(str(value).strip()) * MILLION
    except InvalidOperation:
        raise ConfigError(f"{where}: should be a number (USD per token)") from None
    if not price.is_finite() or price < 0:
        raise ConfigError(f"{where}: should be a non-negative number (USD per token)")
    return price.normalize()


def _base_model_prices(base_model: str) -> dict[str, Any]:
    """model_info.base_model prices an Azure deployment in litellm: write its prices here."""
    import litellm

    costs = litellm.model_cost.get(base_model) or litellm.model_cost.get(
        base_model.partition("/")[2], {}
    )
    return _prices(costs, base_model)


def _is_price(key: str) -> bool:
    return key in PRICES or key == SEARCH or LONG_CONTEXT.fullmatch(key) is not None


def _prices(costs: dict[str, Any], where: str) -> dict[str, Any]:
    """litellm's per-token prices as thriftgate's per-million ones; its long-context prices
    (`*_above_200k_tokens`) as `long_context_prices`, its web search price (the medium search
    context's) as `web_search_usd_per_query`: configured input and output prices leave
    litellm's own map out, so what it would bill above them must be written here."""
    out: dict[str, Any] = {
        ours: _per_million(costs[theirs], f"{where}: {theirs}")
        for theirs, ours in PRICES.items()
        if costs.get(theirs) is not None
    }
    tiers: dict[int, dict[str, Any]] = {}
    for key, value in costs.items():
        match = LONG_CONTEXT.fullmatch(key)
        if match is None or value is None:
            continue
        above = int(match[2]) * (1000 if match[3] else 1)
        tier = tiers.setdefault(above, {"above_prompt_tokens": above})
        tier[LONG_FIELDS[match[1]]] = _per_million(value, f"{where}: {key}")
    for above in sorted(tiers):
        tier = tiers[above]
        if "input_cost_per_mtok" not in tier:  # litellm prices nothing above without it
            continue
        tier.setdefault("output_cost_per_mtok", out.get("output_cost_per_mtok", Decimal(0)))
        out.setdefault("long_context_prices", []).append(tier)
    search = costs.get(SEARCH)
    each = search.get("search_context_size_medium") if isinstance(search, dict) else None
    if each is not None:
        out["web_search_usd_per_query"] = _per_million(each, f"{where}: {SEARCH}") / MILLION
    return out


def _routing(settings: Any, skipped: dict[str, str]) -> dict[str, Any]:
    """cooldown_time -> cooldown_s; allowed_fails (failures before the cool-down) ->
    failure_threshold (the failure that opens the breaker)."""
    if not isinstance(settings, dict):
        return {}
    routing: dict[str, Any] = {}
    if settings.get("cooldown_time") is not None:
        cooldown = _seconds(settings["cooldown_time"], "router_settings.cooldown_time")
        routing["cooldown_s"] = cooldown
        routing["max_cooldown_s"] = max(cooldown, 30.0)
    if settings.get("allowed_fails") is not None:
        try:
            routing["failure_threshold"] = max(int(settings["allowed_fails"]), 0) + 1
        except (TypeError, ValueError):
            raise ConfigError("router_settings.allowed_fails: should be a whole number") from None
    return routing


def _fallbacks(section: str, settings: dict[str, Any], out: Imported) -> None:
    for key in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
        rules = settings.get(key)
        for rule in rules if isinstance(rules, list) else ():
            for model, others in rule.items() if isinstance(rule, dict) else ():
                listed = ", ".join(map(str, others)) if isinstance(others, list) else others
                out.notes.append(
                    f"{section}.{key}: {model} -> [{listed}]: thriftgate falls back within a "
                    f"model's group (every deployment with model {model!r}); to fall back to "
                    f"{listed}, give its deployments model {model!r} as well (the router then "
                    "also picks them when cheaper), or have clients send thriftgate/auto with "
                    "both in auto.models"
                )
    if settings.get("default_fallbacks"):
        out.notes.append(
            f"{section}.default_fallbacks: thriftgate falls back within a model's group; list "
            "the fallback deployments under each model, or use thriftgate/auto with auto.models"
        )


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    pass


def _decimal(dumper: Any, value: Decimal) -> Any:
    text = format(value, "f")
    return dumper.represent_scalar("tag:yaml.org,2002:float" if "." in text else
                                   "tag:yaml.org,2002:int", text)  # fmt: skip


_Dumper.add_representer(Decimal, _decimal)


def render(config: dict[str, Any], source: Path) -> str:
    header = f"# thriftgate config imported from LiteLLM proxy config {source.name}\n"
    body: str = yaml.dump(config, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
    return header + body
