"""Upstreams with other wire formats (Anthropic, Gemini, Bedrock...) through litellm.

litellm translates OpenAI-shaped requests to the provider's API and back; we hand it the
deployment's credentials per call and convert its response objects back to plain dicts.
The import is deferred: litellm takes seconds to import and most gateways never need it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from gateway.errors import InvalidRequest, UpstreamError, UpstreamTimeout
from gateway.providers.base import Endpoint, Json
from gateway.routing.catalog import Deployment

# Request fields litellm would reject or that we handle ourselves.
_DROP = ("model", "stream", "stream_options")


class LiteLLMProvider:
    def __init__(self) -> None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_LOG", "ERROR")
        import litellm

        litellm.drop_params = True
        litellm.telemetry = False
        litellm.suppress_debug_info = True
        self._litellm = litellm

    def _args(self, body: Json, dep: Deployment, timeout_s: float) -> dict[str, Any]:
        args = {k: v for k, v in body.items() if k not in _DROP}
        args["model"] = f"{dep.provider}/{dep.served_model}"
        if dep.config.api_base:
            args["api_base"] = dep.config.api_base
        key = dep.config.api_key()
        if key:
            args["api_key"] = key
        args["timeout"] = timeout_s
        args["num_retries"] = 0
        return args

    async def complete(
        self, body: Json, dep: Deployment, *, endpoint: Endpoint, timeout_s: float
    ) -> Json:
        if endpoint != "chat/completions":
            raise InvalidRequest(
                f"Deployment {dep.name!r} ({dep.provider}) serves chat completions only."
            )
        try:
            resp = await self._litellm.acompletion(**self._args(body, dep, timeout_s))
        except Exception as exc:
            raise _translate(dep, exc) from exc
        return _to_dict(resp)

    async def stream(
        self, body: Json, dep: Deployment, *, endpoint: Endpoint, timeout_s: float
    ) -> AsyncIterator[Json]:
        if endpoint != "chat/completions":
            raise InvalidRequest(
                f"Deployment {dep.name!r} ({dep.provider}) serves chat completions only."
            )
        args = self._args(body, dep, timeout_s)
        args["stream"] = True
        args["stream_options"] = {"include_usage": True}
        try:
            resp = await self._litellm.acompletion(**args)
            async for chunk in resp:
                yield _to_dict(chunk)
        except Exception as exc:
            raise _translate(dep, exc) from exc

    async def embed(self, body: Json, dep: Deployment, *, timeout_s: float) -> Json:
        args = self._args(body, dep, timeout_s)
        try:
            resp = await self._litellm.aembedding(**args)
        except Exception as exc:
            raise _translate(dep, exc) from exc
        return _to_dict(resp)

    async def aclose(self) -> None:
        return None


def _to_dict(obj: Any) -> Json:
    if isinstance(obj, dict):
        return obj
    data: Json = obj.model_dump(exclude_none=True)
    data.pop("_hidden_params", None)
    data.pop("_response_headers", None)
    return data


def _translate(dep: Deployment, exc: Exception) -> UpstreamError | InvalidRequest:
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    # litellm's messages can embed the request; keep only the first line, and never the key.
    raw = str(getattr(exc, "message", "") or exc).splitlines()[0][:300] if str(exc) else name
    key = dep.config.api_key()
    if key:
        raw = raw.replace(key, "***")
    if "Timeout" in name:
        return UpstreamTimeout(f"Deployment {dep.name!r} timed out.")
    if status in (400, 404, 422):
        return InvalidRequest(f"Deployment {dep.name!r} rejected the request: {raw}")
    return UpstreamError(
        f"Deployment {dep.name!r} failed ({name}): {raw}",
        upstream_status=status if isinstance(status, int) else None,
    )
