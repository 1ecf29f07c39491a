"""The engine's OpenAI-compatible HTTP server (Starlette): routes parse, call the backend, render.

`create_app(backend)` builds the app; the lifespan starts the backend and closes it on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from local_engine.backends.base import ServingBackend
from local_engine.errors import BadEngineRequest, EngineError, UnknownModel
from local_engine.metrics import EngineCollector, build_registry, render
from local_engine.protocol import Endpoint

SSE_DONE = b"data: [DONE]\n\n"


def _error(exc: EngineError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status_code)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown path, wrong method), OpenAI-shaped instead of plain text."""
    assert isinstance(exc, HTTPException)
    code = "method_not_allowed" if exc.status_code == 405 else "unknown_url"
    error = BadEngineRequest(f"Invalid URL ({request.method} {request.url.path})", code=code)
    return JSONResponse(error.body(), status_code=exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    """An unexpected failure: a JSON 500 that names nothing internal (the log has the traceback)."""
    return _error(EngineError("the local engine failed to answer this request"))


def _sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


async def _body(request: Request, backend: ServingBackend) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise BadEngineRequest(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadEngineRequest("the request body must be a JSON object")
    model = body.get("model")
    if model is not None and model != backend.model_name:
        raise UnknownModel(
            f"model {model!r} is not served here; try {backend.model_name!r}", param="model"
        )
    return body


async def _sse_stream(first: Any, rest: AsyncGenerator[Any, None]) -> AsyncIterator[bytes]:
    try:
        yield _sse(first)
        async for item in rest:
            yield _sse(item)
    except EngineError as exc:  # headers are out: the error becomes one final event
        yield _sse(exc.body())
    finally:
        await rest.aclose()  # client gone or done: stop generating
    yield SSE_DONE


class ClientGone(Exception):
    """The client hung up before the answer was ready."""


async def _unless_disconnected(request: Request, work: Awaitable[Any]) -> Any:
    """Run `work`; cancel it (which stops the generation) if the client hangs up first."""
    task = asyncio.ensure_future(work)

    async def hang_up() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(hang_up())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise ClientGone
    return task.result()


def _completion_route(endpoint: Endpoint) -> Any:
    async def handle(request: Request) -> Response:
        backend: ServingBackend = request.app.state.backend
        try:
            body = await _body(request, backend)
            if not body.get("stream"):
                result = await _unless_disconnected(request, backend.complete(endpoint, body))
                return JSONResponse(result)
            chunks = backend.stream(endpoint, body)
            first = await anext(chunks)
        except EngineError as exc:
            return _error(exc)
        except ClientGone:
            return Response(status_code=499)  # nobody reads it; for the access log
        return StreamingResponse(_sse_stream(first, chunks), media_type="text/event-stream")

    return handle


async def models(request: Request) -> Response:
    backend: ServingBackend = request.app.state.backend
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {
                    "id": backend.model_name,
                    "object": "model",
                    "created": request.app.state.started,
                    "owned_by": "thriftgate",
                }
            ],
        }
    )


async def metrics(request: Request) -> Response:
    backend: ServingBackend = request.app.state.backend
    text = render(request.app.state.registry) + (await backend.extra_metrics()).encode()
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "backend": request.app.state.backend.name})


def create_app(backend: ServingBackend) -> Starlette:

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await backend.start()
        try:
            yield
        finally:
            await backend.aclose()

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", _completion_route("chat/completions"), methods=["POST"]),
            Route("/v1/completions", _completion_route("completions"), methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.backend = backend
    app.state.started = int(time.time())
    app.state.registry = build_registry(
        EngineCollector(backend.stats, backend.model_name, backend.name, backend.meter)
    )
    return app
