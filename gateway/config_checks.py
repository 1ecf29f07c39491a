"""Start-up checks of the deployments file: mistakes that would otherwise fail every request.

`settings.py` refuses what is malformed (unknown keys, negative prices...). These checks look at
what is well-formed but cannot work: a provider nobody knows, an `openai_compatible` deployment
with nowhere to send to, two defaults in one group. Those stop the start. What may be fine
(a key variable set later by a wrapper, an empty file while trying things out) is a warning.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gateway.providers.litellm_adapter import options_problems
from gateway.providers.names import litellm_name
from gateway.providers.openai_compatible import DEFAULT_BASES
from gateway.providers.registry import OPENAI_COMPATIBLE
from gateway.settings import ConfigError, DeploymentConfig, FileConfig

log = logging.getLogger("thriftgate.config")

OWN_PROVIDERS = OPENAI_COMPATIBLE | {"local"}
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Names as people write them (OPENAI_API_KEY): safe to show. A lower-case "name" may be a key
# pasted in its place (gsk_..., fw_...), so an unset one is never echoed.
CONVENTIONAL_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")


@dataclass(frozen=True, slots=True)
class Problem:
    message: str
    fatal: bool  # True: the gateway refuses to start


def problems(config: FileConfig) -> list[Problem]:
    found: list[Problem] = []
    if not config.deployments:
        found.append(Problem("no deployments are configured: there is nothing to serve", False))
    unknown = _unknown_providers({d.provider for d in config.deployments})
    defaults: dict[str, list[str]] = {}
    for dep in config.deployments:
        where = f"deployment {dep.name!r}"
        if dep.provider in unknown:
            found.append(
                Problem(
                    f"{where}: unknown provider {dep.provider!r} (use openai_compatible, local, "
                    "or a provider litellm knows, e.g. anthropic)",
                    True,
                )
            )
        no_base = dep.provider in OPENAI_COMPATIBLE and dep.provider not in DEFAULT_BASES
        if no_base and not dep.api_base:
            found.append(Problem(f"{where}: provider {dep.provider!r} needs an api_base", True))
        elif dep.provider == "azure" and not dep.api_base and not os.environ.get("AZURE_API_BASE"):
            # litellm needs the resource's endpoint: every request failed with a 502
            found.append(
                Problem(
                    f"{where}: provider 'azure' needs an api_base (the resource's endpoint, "
                    "https://<resource>.openai.azure.com) or AZURE_API_BASE",
                    True,
                )
            )
        elif dep.api_base and not _http_url(dep.api_base):
            found.append(
                Problem(
                    f"{where}: api_base must be an http(s) URL such as http://host:8000/v1 "
                    "(config values are not expanded from the environment)",
                    True,
                )
            )
        elif dep.provider in OPENAI_COMPATIBLE and _endpoint_path(dep.api_base):
            found.append(
                Problem(
                    f"{where}: api_base is the base URL the gateway adds /chat/completions to "
                    f"(such as https://api.groq.com/openai/v1), not the endpoint "
                    f"(.../{_endpoint_path(dep.api_base)})",
                    True,
                )
            )
        key = dep.api_key()
        if dep.api_key_env and not (key and key.strip()):
            found.append(_unset_key(where, dep.api_key_env))
        if dep.provider == "local" and not _local_extra_installed():
            found.append(
                Problem(
                    f"{where}: provider 'local' runs the model in this process and needs the "
                    "local extra (pip install 'thriftgate[local]': torch, transformers)",
                    True,
                )
            )
        elif dep.provider == "local":
            found.extend(Problem(f"{where}: {m}", True) for m in _local_engine_problems(dep))
        elif litellm_name(dep.provider) == "vertex_ai" and not _installed("google.auth"):
            # litellm imports it per request: every request failed with a 502
            found.append(
                Problem(
                    f"{where}: provider 'vertex_ai' needs the google-auth package (pip "
                    "install google-auth)",
                    True,
                )
            )
        elif dep.options and dep.provider in OPENAI_COMPATIBLE:
            found.append(
                Problem(
                    f"{where}: options are read for provider 'local' and litellm's providers "
                    f"(azure, vertex_ai, bedrock...), not {dep.provider!r}: they would be ignored",
                    True,
                )
            )
        elif dep.options:
            found.extend(Problem(f"{where}: {m}", True) for m in options_problems(dep))
        if dep.default:
            defaults.setdefault(dep.model, []).append(dep.name)
    for model, names in defaults.items():
        if len(names) > 1:
            found.append(
                Problem(f"model {model!r} has more than one default deployment: {names}", True)
            )
    served = {d.model for d in config.deployments}
    for model in config.auto.models:
        if model not in served:
            found.append(Problem(f"auto.models names {model!r}, which no deployment serves", False))
    return found


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing too
        return False


def _http_url(value: str) -> bool:
    """An absolute http(s) URL with a host, and no `${...}` left for an expansion that never
    comes: anything else fails every request with an unreachable-deployment 502."""
    if "${" in value:
        return False
    try:
        parts = urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. a malformed IPv6 host or port
        return False


ENDPOINTS = ("chat/completions", "completions", "embeddings", "responses")


def _endpoint_path(api_base: str | None) -> str | None:
    """The endpoint an api_base ends with (the URL a provider's docs show for curl), if any."""
    path = urlsplit(api_base or "").path.rstrip("/")
    return next((e for e in ENDPOINTS if path.endswith("/" + e)), None)


def _unset_key(where: str, api_key_env: str) -> Problem:
    """`api_key_env` names no set variable. Its value is shown only when it reads as a variable
    name: people paste the key itself there, and a log line must not carry it."""
    if CONVENTIONAL_NAME.fullmatch(api_key_env):
        return Problem(
            f"{where}: api_key_env {api_key_env!r} is not set; its requests go out without a key",
            False,
        )
    if VARIABLE_NAME.fullmatch(api_key_env):
        return Problem(
            f"{where}: the variable its api_key_env names is not set (the value is not shown: "
            "it should be a variable's name, not the key itself); its requests go out without "
            "a key",
            False,
        )
    return Problem(
        f"{where}: api_key_env must be the name of an environment variable (letters, digits "
        "and _), not the key itself; its value is not shown",
        True,
    )


def check(config: FileConfig) -> None:
    """Log each warning; raise ConfigError (one line, every fatal problem) if any is fatal."""
    found = problems(config)
    for problem in found:
        if not problem.fatal:
            log.warning("config: %s", problem.message)
    refuse(found)


def refuse(found: list[Problem]) -> None:
    fatal = [p.message for p in found if p.fatal]
    if fatal:
        raise ConfigError("config: " + "; ".join(fatal))


def _unknown_providers(providers: set[str]) -> set[str]:
    rest = providers - OWN_PROVIDERS
    if not rest:
        return set()  # no need to import litellm (seconds) to know
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    known = {str(getattr(p, "value", p)) for p in litellm.provider_list}
    return {p for p in rest if litellm_name(p) not in known}


def _local_engine_problems(dep: DeploymentConfig) -> list[str]:
    """What the local engine would refuse when it loads: misspelt or mistyped `options`, a
    model or draft folder that is not there. The gateway started (a warning, /readyz "ok")
    and every request to the deployment failed."""
    from pydantic import ValidationError

    from gateway.providers.local import engine_options
    from local_engine.model_store import is_hf_folder

    try:
        engine = engine_options(dep)
    except ValidationError as exc:
        return [
            f"options.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        ]
    folders = (("options.model", engine.model), ("options.speculative.draft_model",
               engine.speculative.draft_model))  # fmt: skip
    found = [
        f"{where}: {folder} is not a local Hugging Face model folder (config.json + weights)"
        for where, folder in folders
        if folder is not None and not is_hf_folder(Path(folder).expanduser())
    ]
    if engine.model is None:
        found.extend(_bundled_model_target_problems(engine.model_cache_dir))
    return found


def _bundled_model_target_problems(cache_dir: Path | None) -> list[str]:
    """The bundled SmolLM2 is converted once into the model cache: a cache that cannot be
    created or written started the gateway (/readyz ok) and every request was a 502."""
    import tempfile

    from local_engine.model_store import BUNDLED_FOLDER, default_cache_dir, is_hf_folder

    target = (cache_dir or default_cache_dir()) / BUNDLED_FOLDER
    if is_hf_folder(target):
        return []
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".write-check-"):
            pass
    except OSError as exc:
        return [
            f"the bundled model is converted once into {str(target)!r}, which cannot be "
            f"written: {exc.strerror or exc} (set THRIFTGATE_MODEL_CACHE or "
            "options.model_cache_dir)"
        ]
    return []


def _local_extra_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers"))
