"""`thriftgate engine ...`: run the local engine's OpenAI-compatible server."""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from local_engine.config import DEFAULT_MODEL_NAME, EngineConfig

engine_app = typer.Typer(
    help="The local inference engine (OpenAI-compatible).", no_args_is_help=True
)


@engine_app.callback()
def _engine() -> None:
    """The local inference engine (OpenAI-compatible)."""


def resolve_backend(backend: str, vllm_python: Path | None) -> str:
    """`auto` -> `vllm` where vLLM is installed (this env or a given one), else `transformers`."""
    if backend != "auto":
        return backend
    if vllm_python is not None and vllm_python.exists():
        return "vllm"
    return "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"


def _price(raw: str) -> Decimal:
    """`--hardware-usd-per-hour abc` was a decimal.InvalidOperation traceback."""
    try:
        price = Decimal(raw.strip())
    except InvalidOperation:
        raise typer.BadParameter(
            f"{raw!r} is not a number", param_hint="'--hardware-usd-per-hour'"
        ) from None
    if not price.is_finite() or price < 0:
        raise typer.BadParameter("must be a number >= 0", param_hint="'--hardware-usd-per-hour'")
    return price


# EngineConfig's fields as `engine serve` spells them
FLAGS = {
    "backend": "--backend",
    "model": "--model",
    "served_model_name": "--served-model-name",
    "dtype": "--dtype",
    "max_batch_size": "--max-batch-size",
    "speculative": "--speculative",
    "speculative.method": "--speculative",
    "speculative.draft_model": "--draft-model",
    "speculative.num_speculative_tokens": "--num-speculative-tokens",
    "vllm.python": "--vllm-python",
}
# field names that messages mention ("needs draft_model")
NAMED = {field.rsplit(".", 1)[-1]: flag for field, flag in FLAGS.items() if "_" in field}


def _flag_errors(exc: ValidationError) -> str:
    """pydantic's report named `speculative.method` and `draft_model`, with its type codes and
    a link: one line per mistake, named by its flag."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        for name, flag in NAMED.items():
            message = message.replace(name, flag)
        parts.append(f"{FLAGS.get(where, where)}: {message}")
    return "; ".join(parts)


def _check_vllm(python: Path | None) -> None:
    """`--backend vllm` without vLLM started, then died in a 20-line traceback ("vLLM exited
    with status 1"): said before starting."""
    if python is not None and not python.exists():
        raise typer.BadParameter(f"{python} does not exist", param_hint="'--vllm-python'")
    if python is None:
        found = importlib.util.find_spec("vllm") is not None
    else:
        probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
        found = subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0
    if not found:
        where = python or Path(sys.executable)
        raise typer.BadParameter(
            f"vLLM is not installed in {where} (pip install 'thriftgate[vllm]', or give "
            "--vllm-python / THRIFTGATE_VLLM_PYTHON of an environment that has it)",
            param_hint="'--backend'",
        )


def _check_model_folder(flag: str, path: Path | None) -> None:
    """A missing model folder was a traceback from the server's start-up: said here, at once."""
    if path is None:
        return
    from local_engine.model_store import is_hf_folder

    if not is_hf_folder(Path(path).expanduser()):
        raise typer.BadParameter(
            f"{path} is not a local Hugging Face model folder (config.json + weights)",
            param_hint=f"'{flag}'",
        )


@engine_app.command()
def serve(
    backend: Annotated[
        str,
        typer.Option(
            help="auto | transformers | vllm (auto: vLLM wherever it is installed, "
            "here or at --vllm-python / THRIFTGATE_VLLM_PYTHON; else transformers)"
        ),
    ] = "auto",
    model: Annotated[
        Path | None, typer.Option(help="local HF folder (default: bundled SmolLM2)")
    ] = None,
    speculative: Annotated[
        str, typer.Option(help="off | ngram | draft (vllm also: eagle | eagle3 | mtp)")
    ] = "ngram",
    draft_model: Annotated[
        Path | None, typer.Option(help="draft model folder (--speculative draft)")
    ] = None,
    num_speculative_tokens: Annotated[int, typer.Option(min=1, max=64)] = 10,
    host: str = "127.0.0.1",
    # 99999 was said as :99999 and listened on 34463 (the socket layer wraps it): refused
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8100,
    served_model_name: str = DEFAULT_MODEL_NAME,
    dtype: Annotated[str, typer.Option(help="auto | float32 | bfloat16 | float16")] = "auto",
    max_batch_size: Annotated[int, typer.Option(min=1)] = 8,
    hardware_usd_per_hour: Annotated[
        str, typer.Option(help="hardware price for cost/Mtok")
    ] = "0.10",
    vllm_python: Annotated[Path | None, typer.Option(help="python of the vLLM environment")] = None,
    log_level: str = "info",
) -> None:
    """Serve /v1/chat/completions, /v1/completions, /v1/models and /metrics."""
    from local_engine.model_store import runtime_env

    runtime_env()  # before torch loads
    import uvicorn

    from local_engine.backends import create_backend
    from local_engine.server import create_app

    price = _price(hardware_usd_per_hour)
    _check_model_folder("--model", model)
    _check_model_folder("--draft-model", draft_model)
    logging.basicConfig(level=log_level.upper())
    if vllm_python is None and os.environ.get("THRIFTGATE_VLLM_PYTHON"):
        vllm_python = Path(os.environ["THRIFTGATE_VLLM_PYTHON"])
    backend = resolve_backend(backend, vllm_python)
    if backend == "vllm":
        _check_vllm(vllm_python)
    try:
        config = EngineConfig.model_validate(
            {
                "backend": backend,
                "model": model,
                "served_model_name": served_model_name,
                "dtype": dtype,
                "max_batch_size": max_batch_size,
                "hardware_usd_per_hour": price,
                "speculative": {
                    "method": speculative,
                    "draft_model": draft_model,
                    "num_speculative_tokens": num_speculative_tokens,
                },
                "vllm": {"python": vllm_python},
            }
        )
    except ValidationError as exc:
        raise typer.BadParameter(_flag_errors(exc)) from None
    logging.getLogger("local_engine").info("backend: %s", backend)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the vLLM metrics scrape, every 2 s
    app = create_app(create_backend(config))
    uvicorn.run(app, host=host, port=port, log_level=log_level)
