"""Size guards in front of every route: request headers and body, before any handler runs.

uvicorn's httptools parser has no header-size limit and FastAPI buffers admin bodies whole, so
the limits from `Settings` (`max_header_bytes`, `max_body_bytes`) are enforced here as a pure
ASGI middleware: oversized headers get 431, a declared or streamed body over the limit gets 413,
both in OpenAI's error shape, before a byte of the body is buffered by a handler. A body that
has not arrived whole `read_timeout_s` after it is first read gets 408 and a closed connection
(uvicorn has no such limit: a client with a key that sent all but a byte, or a byte every few
seconds, held its connection and the body read so far for ever). Two different
values of one credential header get 401 here too, so no route picks one its own way. It is the
outermost user middleware, so the fast lane and the FastAPI routes rely on it alike. It also
serves API paths with a trailing slash, or a doubled one, as the plain path, and answers
browsers' CORS checks on `/v1/` (see `cors_headers`).
"""

from __future__ import annotations

import asyncio
import re

import orjson
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CREDENTIAL_HEADERS = frozenset({b"authorization", b"api-key", b"x-admin-key"})


def _error(message: str, code: str) -> bytes:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }
    return orjson.dumps(body)


class SizeGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_header_bytes: int,
        max_body_bytes: int,
        read_timeout_s: float = 60.0,
    ) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header_bytes = 0
        declared: bytes | None = None
        credentials: dict[bytes, bytes] = {}
        conflict: bytes | None = None
        origin = preflight = False
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value) + 4
            if name == b"content-length":
                declared = value
            elif name in CREDENTIAL_HEADERS and credentials.setdefault(name, value) != value:
                conflict = name
            elif name == b"origin":
                origin = True
            elif name == b"access-control-request-method":
                preflight = True
        path = scope["path"]
        if "//" in path or (path.endswith("/") and path.startswith(("/v1/", "/admin/"))):
            scope = _plain_path(scope, path)
            path = scope["path"]
        if origin and path.startswith("/v1/"):
            if preflight and scope["method"] == "OPTIONS":
                await _preflight(send, scope)
                return
            send = _with_cors(send)
        header_bytes += len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        if header_bytes > self.max_header_bytes:
            await _reply(
                send,
                431,
                _error(
                    f"The request headers exceed the limit of {self.max_header_bytes} bytes.",
                    "headers_too_large",
                ),
            )
            return
        if conflict is not None:
            # Which one counts would differ by route (the fast lane's dict keeps the last,
            # Starlette's Headers the first): refuse to guess whose request this is.
            header = conflict.decode("latin-1")
            message = f"The request has two different {header!r} headers; send one."
            await _reply(send, 401, _error(message, "invalid_api_key"))
            return
        limit = self.max_body_bytes
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                await _reply(send, 400, _error("Invalid Content-Length header.", "invalid_header"))
                return
            if too_big:
                await _reply(send, 413, _error(_too_large(limit), "request_too_large"))
                return

        seen = 0
        read_by: float | None = None  # when the body must be in, from its first read
        body_done = False  # after it, `receive` only waits for the disconnect: no deadline

        async def limited_receive() -> Message:
            nonlocal seen, read_by, body_done
            if body_done:
                return await receive()
            loop = asyncio.get_running_loop()
            if read_by is None:
                read_by = loop.time() + self.read_timeout_s
            try:
                async with asyncio.timeout_at(read_by):
                    message = await receive()
            except TimeoutError:
                body_done = True  # the answer is this 408; later reads wait for the close
                # An HTTPException, so FastAPI's body parsing passes it on (anything else
                # becomes its generic 400); the app's handler and the fast lane render it.
                raise HTTPException(
                    status_code=408,
                    detail=_too_slow(self.read_timeout_s),
                    headers={"connection": "close"},  # the rest of the body is never read
                ) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(status_code=413, detail=_too_large(limit))
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        await self.app(scope, limited_receive, send)


_SLASHES = re.compile(r"//+")
_RAW_SLASHES = re.compile(rb"//+")


def _plain_path(scope: Scope, path: str) -> Scope:
    """`/v1/chat/completions/` and `/v1//chat/completions` (a base URL ending in `/` joined
    to a path starting with one, by a client that does not trim it) are served as
    `/v1/chat/completions`, as nginx merges slashes: Starlette would answer the first with a
    bare 307 to an absolute `http://` URL (wrong behind a TLS proxy), the second with a 404."""
    merged = _SLASHES.sub("/", path)
    raw = scope.get("raw_path")
    if isinstance(raw, bytes):
        raw = _RAW_SLASHES.sub(b"/", raw)
    if merged.endswith("/") and merged.startswith(("/v1/", "/admin/")):
        merged = merged.rstrip("/")
        raw = raw.rstrip(b"/") if isinstance(raw, bytes) else raw
    return {**scope, "path": merged or "/", "raw_path": raw}


# Browser apps call the API straight from a page, as they call OpenAI's: its preflight has to
# be answered and its answers readable from any origin. The API's credential is a bearer key
# the page itself sends, never a cookie, so `*` grants a page nothing it did not already hold;
# the dashboard and /admin (cookie and admin key) get no CORS headers at all.
CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-expose-headers", b"*"),
]
_PREFLIGHT_MAX_AGE_S = b"600"


async def _preflight(send: Send, scope: Scope) -> None:
    asked = b", ".join(
        value for name, value in scope["headers"] if name == b"access-control-request-headers"
    )
    headers = [
        (b"access-control-allow-origin", b"*"),
        (b"access-control-allow-methods", b"GET, HEAD, POST, DELETE, OPTIONS"),
        (b"access-control-allow-headers", asked or b"authorization, content-type"),
        (b"access-control-max-age", _PREFLIGHT_MAX_AGE_S),
        (b"content-length", b"0"),
    ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _with_cors(send: Send) -> Send:
    async def send_with_cors(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *CORS_HEADERS]}
        await send(message)

    return send_with_cors


def _too_large(limit: int) -> str:
    return f"The request body exceeds the limit of {limit} bytes."


def _too_slow(timeout_s: float) -> str:
    return f"The request body did not arrive whole within {timeout_s:g} s; send it at once."


async def _reply(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
