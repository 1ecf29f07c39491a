"""The hot OpenAI routes served on raw ASGI, ahead of FastAPI's middleware and routing stack.

Profiling the gateway under load (py-spy, 16 concurrent clients) put ~35% of its CPU in the
framework layers around the handler: middlewares, routing, dependency solving. Installed as
the outermost user middleware, this skips everything inside it: `POST /v1/chat/completions`,
`/v1/completions` and `/v1/embeddings` are answered here instead, with the same parsing,
pipeline, rendering and error shape as the FastAPI routes in `openai.py` (which stay
registered: they document the API in the OpenAPI schema and serve when
`THRIFTGATE_FAST_LANE=false`). Everything else passes through untouched.
"""

from __future__ import annotations

import logging

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.errors import error_response
from gateway.api.openai import parse_json, render
from gateway.errors import GatewayError, InvalidRequest, PayloadTooLarge
from gateway.pipeline.context import EndpointName
from gateway.pipeline.pipeline import request_id_from

log = logging.getLogger("thriftgate.api")

ROUTES: dict[str, EndpointName] = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
}


class FastLane:
    def __init__(self, app: ASGIApp, *, max_header_bytes: int, max_body_bytes: int) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = ROUTES.get(scope["path"])
            if endpoint is not None:
                await self._serve(endpoint, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(
        self, endpoint: EndpointName, scope: Scope, receive: Receive, send: Send
    ) -> None:
        headers: dict[str, str] = {}
        size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        for name, value in scope["headers"]:
            size += len(name) + len(value) + 4
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        rid = request_id_from(headers)
        headers["x-request-id"] = rid
        response: Response
        try:
            if size > self.max_header_bytes:
                response = error_response(
                    431,
                    f"The request headers exceed the limit of {self.max_header_bytes} bytes.",
                    "invalid_request_error",
                    "headers_too_large",
                    headers={"connection": "close"},
                )
                await response(scope, receive, send)
                return
            raw = await self._read_body(headers, receive)
            if raw is None:
                return  # the client went away before sending its body
            services = scope["app"].state.services  # set by Starlette before any middleware
            ctx, reply = await services.pipeline.handle(endpoint, parse_json(raw), headers)
            response = render(ctx, reply)
        except GatewayError as exc:
            out = {**exc.headers, "x-request-id": rid}
            response = error_response(
                exc.status_code, exc.message, exc.type, exc.code, exc.param, out
            )
        except Exception:
            log.exception("unhandled error on POST %s", scope["path"])
            response = error_response(
                500,
                "The gateway hit an internal error; the request was not completed.",
                "server_error",
                "internal_error",
                headers={"x-request-id": rid},
            )
        await response(scope, receive, send)

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes | None:
        limit = self.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                raise InvalidRequest(
                    "Invalid Content-Length header.", code="invalid_header"
                ) from None
            if too_big:
                raise _too_large(limit)
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body = message.get("body", b"")
            seen += len(body)
            if seen > limit:
                raise _too_large(limit)
            chunks.append(body)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes.")
