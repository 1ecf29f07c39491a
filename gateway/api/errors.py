"""The one place an exception becomes an HTTP response, always in OpenAI's error shape."""

from __future__ import annotations

import logging

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from gateway.accounting.ledger import write_outage
from gateway.api.deps import header_map
from gateway.errors import INTERNAL_ERROR, GatewayError
from gateway.pipeline.pipeline import request_id_from

log = logging.getLogger("thriftgate.api")

_STATUS_CODES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    408: ("invalid_request_error", "request_timeout"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    422: ("invalid_request_error", "invalid_request"),
}


def error_response(
    status: int,
    message: str,
    type_: str,
    code: str | None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
    request: Request | None = None,
) -> Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    out = dict(headers or {})
    if request is not None and "x-request-id" not in out:
        # a route that set none (an unknown path, a 405, a failure before the route ran):
        # the client's own id echoed, or one made, as every other answer carries
        rid = getattr(request.state, "request_id", None)
        out["x-request-id"] = rid or request_id_from(header_map(request))
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=out
    )


def http_error_response(
    exc: StarletteHTTPException,
    path: str,
    *,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A Starlette/FastAPI HTTPException (e.g. SizeGuard's 413) in OpenAI's error shape."""
    type_, code = _STATUS_CODES.get(exc.status_code, ("server_error", "error"))
    message = exc.detail if isinstance(exc.detail, str) else "Request failed."
    if exc.status_code == 404 and message == "Not Found":
        message = f"Unknown path {path!r}."
    out = {**(exc.headers or {}), **(headers or {})}
    return error_response(exc.status_code, message, type_, code, headers=out, request=request)


def gateway_error_response(
    exc: GatewayError, *, request: Request | None = None, headers: dict[str, str] | None = None
) -> Response:
    """A `GatewayError` with its own headers (Retry-After...) plus `headers`."""
    out = {**exc.headers, **(headers or {})}
    return error_response(exc.status_code, exc.message, exc.type, exc.code, exc.param, out, request)


def internal_error_response(
    *, request: Request | None = None, headers: dict[str, str] | None = None
) -> Response:
    """The 500 for an unexpected exception (logged by the caller; no detail leaves)."""
    return error_response(
        500,
        INTERNAL_ERROR,
        "server_error",
        "internal_error",
        headers=headers,
        request=request,
    )


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def _gateway(request: Request, exc: GatewayError) -> Response:
        return gateway_error_response(exc, request=request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errs = exc.errors()
        first = errs[0] if errs else {}
        if first.get("type") == "json_invalid":  # the body itself, not a field of it
            why = first.get("ctx", {}).get("error", "invalid")
            return error_response(
                400,
                f"The request body is not valid JSON: {why}.",
                "invalid_request_error",
                "invalid_json",
                request=request,
            )
        loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        if loc:
            msg = f"Invalid value for '{loc}': {first.get('msg', 'invalid')}"
        elif not _is_json(request.headers.get("content-type", "")):
            # `curl -d` sends a form type: the framework does not read such a body as JSON.
            msg = "Invalid request body: send it as JSON, with Content-Type: application/json."
        elif first.get("type") == "value_error":  # a check across fields: say which
            msg = f"Invalid request body: {str(first.get('msg')).removeprefix('Value error, ')}."
        else:
            msg = "Invalid request body."
        return error_response(
            400, msg, "invalid_request_error", "invalid_value", loc or None, request=request
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return http_error_response(exc, request.url.path, request=request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        if database_unavailable(exc):
            # The admin API, the dashboard's forms... while Postgres restarts: a 500 with a
            # traceback each, which clients do not retry. A 503 they do, and one line.
            log.warning(
                "database unavailable on %s %s (%s)",
                request.method,
                request.url.path,
                type(exc).__name__,
            )
            return error_response(
                503,
                "The database is unavailable; retry shortly.",
                "server_error",
                "database_unavailable",
                headers={"Retry-After": "2"},
                request=request,
            )
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return internal_error_response(request=request)


def database_unavailable(exc: BaseException) -> bool:
    """A database that cannot be reached or is going away (refused, reset, restarting, out of
    connections), as opposed to a bug."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or write_outage(exc)
    lost = asyncpg.PostgresConnectionError | asyncpg.exceptions.ConnectionDoesNotExistError
    return isinstance(exc, lost)
