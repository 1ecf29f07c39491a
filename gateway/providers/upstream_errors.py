"""An OpenAI-compatible upstream's error answer as the gateway's error: its message in whatever
shape the server writes it (OpenAI's, vLLM's flat one, Mistral's and FastAPI's validation lists,
TGI's and LM Studio's strings, a reverse proxy's HTML page), its code and param where it has
them, and whose fault it is (the request's, the deployment's, the operator's account's)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from gateway.errors import InvalidRequest, UpstreamError, UpstreamRateLimited
from gateway.providers.base import (
    credentials_refused,
    deployment_not_found,
    masked_text,
)
from gateway.providers.openai_shape import failed_choice
from gateway.routing.catalog import Deployment

MAX_ERROR_BYTES = 64 * 1024
# How much of an upstream's error text we pass on. The ledger's error_code column is String(64):
# a longer upstream code would get the row refused.
MAX_MESSAGE_CHARS = 500
MAX_TEXT_BODY_CHARS = 200
MAX_CODE_CHARS = 64
# How OpenAI words a 404 for a model asked on an endpoint it does not serve.
WRONG_ENDPOINT = "not supported in the v1/"


def message_of(parsed: Any) -> str:
    """The upstream's whole error message: pass it through `masked_text` before showing it."""
    text = error_message(parsed)
    if text is None and isinstance(parsed, dict) and (choice := failed_choice(parsed)):
        text = error_message(choice) or "its answer ended with finish_reason 'error'"
    return text or "no error message"


def error_message(parsed: Any) -> str | None:
    """An error body's message, if it has one: OpenAI's (and Anthropic's) `{"error":
    {"message"}}`, vLLM's flat `{"message"}`, and the validation lists of Mistral
    (`{"message": [{"loc", "msg"}...]}`) and FastAPI (`{"detail": [...]}`)."""
    if isinstance(parsed, dict):
        err = parsed.get("error")
        if isinstance(err, dict) and (text := _text(err.get("message"))):
            return text
        if isinstance(err, str) and err:
            return err
        for key in ("message", "detail"):
            if text := _text(parsed.get(key)):
                return text
    return None


def _text(value: Any) -> str | None:
    """A message field as text: a string, or a validation list joined ("body.foo: msg; ...")."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict):  # Mistral nests it again: {"message": {"detail": [...]}}
        return _text(value.get("detail") or value.get("msg") or value.get("message"))
    if not isinstance(value, list):
        return None
    parts: list[str] = []
    for item in value[:20]:  # the message is cut to MAX_MESSAGE_CHARS anyway
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, dict) and isinstance(item.get("msg"), str):
            loc = item.get("loc")
            where = ".".join(str(p) for p in loc) if isinstance(loc, list) else ""
            parts.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(parts) or None


# How servers that have no `context_length_exceeded` code refuse a prompt too long for their
# context: vLLM, SGLang, Fireworks, Mistral ("maximum context length is 4096 tokens"), llama.cpp
# ("the request exceeds the available context size"), TGI ("`inputs` tokens + `max_new_tokens`
# must be <= 4096", "`inputs` must have less than 4096 tokens"), LM Studio ("the model is loaded
# with context length of only 4096 tokens"), Ollama ("the input length exceeds the context
# length"), and Anthropic-style "prompt is too long".
_CONTEXT_TOO_LONG = re.compile(
    r"maximum context length"
    r"|context (?:length|size|window)[^.]{0,40}(?:exceed|too (?:long|small)|only|overflow)"
    r"|exceeds? (?:the )?(?:available |model'?s? |maximum )?context"
    r"|longer than the model'?s? (?:context|maximum)"
    r"|`inputs` tokens \+ `max_new_tokens` must be"
    r"|`inputs` must have less than"
    r"|prompt is too long",
    re.IGNORECASE,
)


_NOT_LOADED = re.compile(r"no models? (?:is |are )?loaded|model is (?:not loaded|unloaded)", re.I)


def context_too_long(message: str) -> bool:
    """Whether an upstream's 400 says the prompt (with its max_tokens) does not fit its context."""
    return _CONTEXT_TOO_LONG.search(message) is not None


def _code_and_param(dep: Deployment, parsed: Any) -> tuple[str | None, str | None]:
    """The OpenAI error's `code` and `param` ("context_length_exceeded", "messages"), if any;
    from the top level of a flat error body (vLLM, Mistral). An integer code (Mistral's 3001)
    goes on as its digits."""
    if not isinstance(parsed, dict):
        return None, None
    err = parsed.get("error")
    if not isinstance(err, dict):
        err = parsed if "error" not in parsed else {}
    code, param = err.get("code"), err.get("param")
    if isinstance(code, int) and not isinstance(code, bool):
        code = str(code)
    return (
        masked_text(dep, code, MAX_CODE_CHARS) if isinstance(code, str) and code else None,
        masked_text(dep, param, MAX_CODE_CHARS) if isinstance(param, str) and param else None,
    )


def unbuildable(dep: Deployment, exc: ValueError) -> UpstreamError:
    """aiohttp refused to build the request: a control character inside the key, or
    credentials in api_base as well as a key. The deployment's fault, so dispatch falls back."""
    why = masked_text(dep, str(exc), MAX_MESSAGE_CHARS)
    return UpstreamError(
        f"Deployment {dep.name!r}: the request could not be built ({why}); "
        "check its api_key_env and api_base."
    )


def upstream_error(
    dep: Deployment,
    status: int,
    raw: bytes,
    headers: Mapping[str, str] | None = None,
    path: str | None = None,
) -> UpstreamError:
    """The upstream's error answer to a POST to `path` as the gateway's error (a 400 is raised
    here, as the client's own mistake)."""
    headers = headers or {}
    parsed: Any = None
    try:
        parsed = orjson.loads(raw)
        msg = masked_text(dep, message_of(parsed), MAX_MESSAGE_CHARS)
    except orjson.JSONDecodeError:
        body = _plain(raw[:MAX_ERROR_BYTES].decode("utf-8", "replace"))
        msg = masked_text(dep, body, MAX_TEXT_BODY_CHARS).strip() or "empty body"
    if status in (401, 403):
        return credentials_refused(dep, status, msg)
    if status == 404 and path is not None and (path != "chat/completions" or WRONG_ENDPOINT in msg):
        # This deployment does not serve this endpoint: OpenAI's answer to a chat model on the
        # legacy or embeddings endpoint, or to an embedding model on chat ("This is not a chat
        # model and thus not supported in the v1/chat/completions endpoint"), or an upstream
        # without the route. Its traffic on its own endpoint may be fine, so it is no breaker
        # failure; another deployment of the group may serve it.
        raise InvalidRequest(
            f"Deployment {dep.name!r} does not serve /v1/{path}. The upstream said: {msg}",
            param="model",
            code="unsupported_parameter",
        )
    if status == 404:
        return deployment_not_found(dep, status, msg + _without_path(dep))
    if 300 <= status < 400:
        where = masked_text(dep, headers.get("Location", "elsewhere"), MAX_TEXT_BODY_CHARS)
        return deployment_not_found(dep, status, f"moved to {where}")
    if status == 402:
        # Payment Required: the operator's account has no credit left (OpenRouter, DeepInfra):
        # no fault of the request, and no retry by the client can help
        return out_of_quota(dep, status, msg)
    if status in (400, 422) and _NOT_LOADED.search(msg):
        # A local server with no model loaded (LM Studio's 400 "No models loaded"): the
        # deployment's state, not the request. No status of its own, so that dispatch falls
        # back and counts it, as for a 404.
        return UpstreamError(
            f"Deployment {dep.name!r} has no model loaded (HTTP {status}); load it on its "
            f"server, or check its upstream_model. The upstream said: {msg}",
            code="upstream_not_found",
        )
    text = f"Deployment {dep.name!r} returned HTTP {status}: {msg}"
    code, param = _code_and_param(dep, parsed)
    if code == str(status):
        code = None  # llama.cpp's and vLLM's `code` is the status again: no code of its own
    if status in (400, 413, 422):
        # The request itself is wrong; another deployment would refuse it too. Its code and
        # param go back as they came: clients branch on "context_length_exceeded".
        if code != "context_length_exceeded" and context_too_long(msg):
            # said in words only (vLLM, llama.cpp, TGI, LM Studio): named as OpenAI does, so
            # that a deployment with a larger context in the group gets the request
            code, param = "context_length_exceeded", param or "messages"
        err = InvalidRequest(text, code=code or "upstream_rejected_request", param=param)
        err.status_code = 400 if status != 413 else 413
        raise err
    if status == 429:
        return rate_limited(dep, msg, code, headers)
    failed = UpstreamError(text, upstream_status=status, retryable=True)
    if headers.get("x-should-retry") == "false":  # the upstream knows a retry cannot help
        failed.headers["x-should-retry"] = "false"
    return failed


def rate_limited(
    dep: Deployment, msg: str, code: str | None, headers: Mapping[str, str]
) -> UpstreamError:
    """An upstream 429. Dispatch falls back either way; if it is the last answer the client
    gets a 429 with the upstream's Retry-After, except for an exhausted quota: that is the
    operator's provider account, and no retry by the client can help."""
    if code == "insufficient_quota":
        return out_of_quota(dep, 429, msg)
    limited = UpstreamRateLimited(
        f"Deployment {dep.name!r} is rate limited by its upstream (HTTP 429): {msg}",
        upstream_status=429,
        code=code or "rate_limit_exceeded",
    )
    for name in ("Retry-After", "retry-after-ms"):
        value = headers.get(name, "")
        if value and len(value) <= 64 and value.isprintable():  # seconds, or an HTTP date
            limited.headers[name] = value
    return limited


def _without_path(dep: Deployment) -> str:
    """A hint for the commonest 404 of a self-hosted server: its api_base written without the
    /v1 its OpenAI routes live under (Ollama's http://localhost:11434)."""
    base = dep.config.api_base
    if base and urlsplit(base).path.strip("/") == "":
        # not the base itself: it may carry credentials (http://user:password@host)
        return " (its api_base has no path: OpenAI-compatible servers serve under /v1)"
    return ""


def out_of_quota(dep: Deployment, status: int, msg: str) -> UpstreamError:
    """The operator's provider account is out of quota or credit (OpenAI's 429
    `insufficient_quota`, a 402): the deployment's fault; the client is told not to retry."""
    failed = UpstreamError(
        f"Deployment {dep.name!r}'s provider account is out of quota (HTTP {status}): {msg}",
        upstream_status=status,
        code="upstream_quota_exhausted",
    )
    failed.headers["x-should-retry"] = "false"
    return failed


_TAG = re.compile(r"<(script|style)\b.*?</\1>|<[^>]*>", re.IGNORECASE | re.DOTALL)


def _plain(body: str) -> str:
    """An error page's text: a reverse proxy's HTML (nginx's "502 Bad Gateway", a cloud load
    balancer's page) without its markup, its blanks collapsed."""
    if "<" in body and ">" in body:
        body = _TAG.sub(" ", body)
    return " ".join(body.split())
