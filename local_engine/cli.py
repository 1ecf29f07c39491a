"""`thriftgate engine ...`: run the local engine's OpenAI-compatible server."""

from __future__ import annotations

import importlib.util
import logging
import os
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer

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
    logging.getLogger("local_engine").info("backend: %s", backend)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the vLLM metrics scrape, every 2 s
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
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    app = create_app(create_backend(config))
    uvicorn.run(app, host=host, port=port, log_level=log_level)
