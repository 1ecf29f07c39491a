"""`thriftgate engine ...`: run the local engine's OpenAI-compatible server."""

from __future__ import annotations

import importlib.util
import logging
import os
from decimal import Decimal
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
    port: int = 8100,
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
                "hardware_usd_per_hour": Decimal(hardware_usd_per_hour),
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
