"""The hot OpenAI routes served on raw ASGI, ahead of FastAPI's middleware and routing stack.

Profiling the gateway under load (py-spy, 16 concurrent clients) put ~35% of its CPU in the
framework layers around the handler: middlewares, routing, dependency solving. Installed as
the user middleware just inside SizeGuard, this skips everything inside it:
`POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings` and `/v1/responses` are
answered here instead, with the same parsing, pipeline, rendering and error shape as the
FastAPI routes in `openai.py` and `responses.py` (which stay
registered: they document the API in the OpenAPI schema and serve when
`THRIFTGATE_FAST_LANE=false`). Everything else passes through untouched.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.disconnect import DisconnectWatch
from gateway.api.errors import (
    gateway_error_response,
    http_error_response,
    internal_error_response,
)
from gateway.api.openai import decode_body, parse_json, render
from gateway.api.responses import render_responses
from gateway.errors import GatewayError
from gateway.pipeline.context import ApiName
from gateway.pipeline.pipeline import request_id_from

log = logging.getLogger("thriftgate.api")

ROUTES: dict[str, ApiName] = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/responses": "responses",
}


class FastLane:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            api = ROUTES.get(scope["path"])
            if api is not None:
                await self._serve(api, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, api: ApiName, scope: Scope, receive: Receive, send: Send) -> None:
        # Header and body size limits are enforced by SizeGuard, which wraps this middleware.
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        rid = request_id_from(headers)
        headers["x-request-id"] = rid
        response: Response
        try:
            services = scope["app"].state.services  # set by Starlette before any middleware
            # The key before a byte of the body is read (see run_pipeline): a client that sent
            # `Expect: 100-continue` with a bad key gets its 401 instead of a 100 and an upload.
            tenant = await services.keys.authenticate_headers(headers)
            raw = await _read_body(receive)
            if raw is None:
                return  # the client went away before sending its body
            limit = services.settings.max_body_bytes
            raw = decode_body(raw, headers.get("content-encoding"), limit)
            body = parse_json(raw, headers.get("content-type"))
            watch = DisconnectWatch(receive)
            try:
                ctx, reply = await services.pipeline.handle(api, body, headers, tenant)
            except asyncio.CancelledError:
                if watch.settled():
                    return  # the client hung up: nobody to answer, the request is settled
                raise watch.server_stopping() from None
            finally:
                watch.stop()
            if api == "responses":
                response = render_responses(ctx, reply, body)
            else:
                response = render(ctx, reply)
        except HTTPException as exc:  # SizeGuard's 413 for a streamed body over the limit
            response = http_error_response(exc, scope["path"], headers={"x-request-id": rid})
        except GatewayError as exc:
            response = gateway_error_response(exc, headers={"x-request-id": rid})
        except Exception:
            log.exception("unhandled error on POST %s", scope["path"])
            response = internal_error_response(headers={"x-request-id": rid})
        await response(scope, receive, send)


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
