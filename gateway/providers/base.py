"""The provider contract: how the gateway talks to one kind of upstream.

Bodies are plain dicts in OpenAI's wire format (parsed with orjson), so unknown fields pass
through untouched and nothing is validated twice. A provider raises `UpstreamError` (or its
`UpstreamTimeout`) for anything the upstream did wrong; the router decides whether to retry.
Three kinds implement it: `openai_compatible` (OpenAI, Groq, vLLM, our local engine over HTTP...),
`litellm` (other wire formats, e.g. Anthropic) and `local` (the in-process engine).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import quote, quote_plus

from gateway.errors import UpstreamError

if TYPE_CHECKING:
    from gateway.routing.catalog import Deployment

Json = dict[str, Any]
Endpoint = Literal["chat/completions", "completions"]

# The tenant the provider call in progress serves (dispatch sets it for the request's task):
# the in-process local engine queues requests fairly between tenants by it. A remote upstream
# is not told.
REQUEST_TENANT: ContextVar[str] = ContextVar("thriftgate_request_tenant", default="")


class Provider(Protocol):
    async def complete(
        self, body: Json, dep: Deployment, *, endpoint: Endpoint, timeout_s: float
    ) -> Json:
        """One non-streaming completion; returns the upstream's JSON response."""
        ...

    def stream(
        self, body: Json, dep: Deployment, *, endpoint: Endpoint, timeout_s: float
    ) -> AsyncIterator[Json]:
        """Stream chunks (OpenAI chunk objects, the usage chunk included when asked for).

        Must raise before yielding anything if the upstream refuses the request, so the
        router can still fall back; closing the iterator cancels the upstream request.
        """
        ...

    async def embed(self, body: Json, dep: Deployment, *, timeout_s: float) -> Json: ...

    async def aclose(self) -> None: ...


def prompts_in(body: Json, endpoint: str) -> int:
    """How many prompts a request sends: a legacy completions request may send several (a list
    of strings or of token-id arrays, not one prompt's token array); any other, one. The
    upstream answers (and bills) each."""
    prompt = body.get("prompt") if endpoint == "completions" else None
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
        return len(prompt)
    return 1


def provider_key(dep: Deployment) -> str | None:
    """The deployment's key as sent upstream. A key read from a file (`export K=$(cat f)`, a
    mounted secret) often ends in a newline, which no HTTP header may carry: strip it."""
    key = dep.config.api_key()
    return key.strip() or None if key else None


# A run of this many characters of the key, anywhere in upstream text, is a piece of the key.
KEY_FRAGMENT_CHARS = 8


# The operator's account identifiers in upstream messages: OpenAI's "Rate limit reached for
# gpt-4o in organization org-AbC123... on tokens per min", project ids, and OpenAI's own
# masked echo of the key ("Incorrect API key provided: sk-proj-****abcd", its last characters).
_ACCOUNT_ID = re.compile(r"\b(org|proj|acct)([-_])[A-Za-z0-9]{6,}")
_MASKED_KEY = re.compile(r"\bsk-[A-Za-z0-9_-]*\*{2,}[A-Za-z0-9_-]*")


def mask_accounts(text: str) -> str:
    text = _ACCOUNT_ID.sub(lambda m: f"{m[1]}{m[2]}***", text)
    return _MASKED_KEY.sub("sk-***", text)


def masked_text(dep: Deployment, text: str, limit: int) -> str:
    """Upstream text fit to show: the key masked first, then cut, so no prefix of it survives.
    Some upstreams echo the key they were sent ("Incorrect API key provided: ..."), whole, in
    part ("sk-abc...xyz" minus a few characters), URL-encoded (a request URL with `?key=`) or
    JSON-escaped (`\\/`): every form, and every run of `KEY_FRAGMENT_CHARS` of its characters,
    is masked; so are the operator's organisation and project ids (`mask_accounts`)."""
    key = provider_key(dep)
    if not key:
        return mask_accounts(text[: limit + 64])[:limit]
    return mask_accounts(mask_key(text, key, limit + len(key)))[:limit]


def mask_key(text: str, key: str, scan: int | None = None) -> str:
    """`text` with every form of `key` and every piece of it masked; past `scan` characters
    (once the whole key's forms are gone) it is cut, which bounds the piece search."""
    escaped = json.dumps(key)[1:-1]
    for form in sorted(
        {
            key,
            quote(key, safe=""),
            quote_plus(key),
            escaped,
            escaped.replace("/", "\\/"),
        },
        key=len,
        reverse=True,
    ):
        text = text.replace(form, "***")
    text = text if scan is None else text[:scan]
    n = KEY_FRAGMENT_CHARS
    if len(key) < n:
        return text
    pieces = {key[i : i + n] for i in range(len(key) - n + 1)}
    masked = bytearray(len(text))
    for i in range(len(text) - n + 1):
        if text[i : i + n] in pieces:
            masked[i : i + n] = b"\x01" * n
    if not any(masked):
        return text
    out: list[str] = []
    for i, ch in enumerate(text):
        if not masked[i]:
            out.append(ch)
        elif i == 0 or not masked[i - 1]:
            out.append("***")
    return "".join(out)


def credentials_refused(dep: Deployment, status: int, detail: str) -> UpstreamError:
    """An upstream 401/403. The tenant's key was checked by the gateway, so the upstream refused
    the deployment's own key: its fault, not the client's. Dispatch falls back and counts it."""
    return UpstreamError(
        f"Deployment {dep.name!r} refused the gateway's credentials for it (HTTP {status}); "
        f"check its api_key_env. The upstream said: {detail}",
        upstream_status=status,
        code="upstream_auth_failed",
    )


def deployment_not_found(dep: Deployment, status: int, detail: str) -> UpstreamError:
    """An upstream 404 (or a redirect, which aiohttp would follow as a GET): the path or model
    the deployment names does not exist there. Its config is wrong, not the client's request,
    so dispatch falls back and counts it; if every deployment fails the client gets a 502."""
    return UpstreamError(
        f"Deployment {dep.name!r} got HTTP {status} from its upstream; check its upstream_model "
        f"and api_base. The upstream said: {detail}",
        upstream_status=status,
        code="upstream_not_found",
    )
