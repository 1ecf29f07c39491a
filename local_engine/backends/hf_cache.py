"""The key-value cache argument of a transformers model's forward, under either of its names.

transformers 5.x renamed `past_key_values` to `cache` (the old name still works but warns,
which is an error under pytest's `filterwarnings = error`). Ask the model which one it takes.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    model_class: Any = type(model)
    return {_cache_parameter(model_class): cache}


@functools.lru_cache(maxsize=64)
def _cache_parameter(model_class: Any) -> str:
    params = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in params else "past_key_values"
