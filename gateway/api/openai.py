"""The OpenAI-compatible surface: parse, call the pipeline, render JSON or SSE. Nothing else."""

from __future__ import annotations

import asyncio
import codecs
import re
import zlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.accounting.pricing import usd_text
from gateway.api.deps import ServicesDep, header_map
from gateway.api.disconnect import ClientStream, DisconnectWatch
from gateway.errors import ClientGone, InvalidRequest, PayloadTooLarge
from gateway.pipeline.context import (
    ApiName,
    EndpointName,
    Json,
    Reply,
    RequestContext,
    TenantInfo,
)
from gateway.pipeline.pipeline import request_id_from
from gateway.pipeline.route import servable_models
from gateway.services import Services

router = APIRouter(prefix="/v1", tags=["openai"])

OBJECT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["model"],
                    "properties": {"model": {"type": "string"}},
                    "additionalProperties": True,
                }
            }
        },
    }
}


async def read_json(request: Request, headers: dict[str, str], limit: int) -> Any:
    # Header and body size limits are enforced by SizeGuard before this reads a byte.
    raw = decode_body(await request.body(), headers.get("content-encoding"), limit)
    return parse_json(raw, headers.get("content-type"))


# Content-Encoding tokens (RFC 9110 §8.4.1) and their zlib window: gzip's header, or zlib's.
_INFLATE_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": 0}


def decode_body(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body with its Content-Encoding undone (gzip, deflate), `limit` bytes at most once
    inflated: SizeGuard only saw the compressed size, and a zip bomb must not fill memory."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    for coding in reversed([c for c in codings if c not in ("", "identity")]):
        wbits = _INFLATE_WBITS.get(coding)
        if wbits is None:
            err = InvalidRequest(
                f"Content-Encoding {coding!r} is not supported; send the body uncompressed, "
                "gzip or deflate.",
                code="unsupported_media_type",
            )
            err.status_code = 415
            raise err
        if wbits == 0 and not _zlib_header(raw):
            wbits = -zlib.MAX_WBITS  # "deflate" sent raw, without its zlib header, as some do
        raw = _inflate(raw, coding, wbits, limit)
    return raw


def _zlib_header(data: bytes) -> bool:
    # RFC 1950: method 8 (deflate), and the two header bytes are a multiple of 31
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def _inflate(data: bytes, coding: str, wbits: int, limit: int) -> bytes:
    out = bytearray()
    try:
        while data:  # a gzip body may be several members back to back
            inflater = zlib.decompressobj(wbits)
            out += inflater.decompress(data, limit + 1 - len(out))
            if len(out) > limit:
                raise PayloadTooLarge(
                    f"The request body exceeds the limit of {limit} bytes once decompressed."
                )
            if not inflater.eof:
                raise zlib.error("truncated")
            data = inflater.unused_data
    except zlib.error as exc:
        raise InvalidRequest(
            f"The request body is not valid {coding} data (Content-Encoding: {coding}): {exc}.",
            code="invalid_body",
        ) from None
    return bytes(out)


def parse_json(raw: bytes, content_type: str | None = None) -> Any:
    """The body's JSON. JSON travels as UTF-8 (RFC 8259), but a leading byte order mark is
    ignored (as the RFC allows: PowerShell's UTF-8 files begin with one), and a body in the
    charset its Content-Type names is read in it: UTF-16 or UTF-32 always, another one
    (`ISO-8859-1`, older Java and .NET clients' default) when the body is not UTF-8."""
    label = _charset_label(content_type)
    codec = _codec(label)
    if codec is not None and codec.startswith(("utf-16", "utf-32")):
        raw = _transcode(raw, codec)
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.", code="invalid_body")
    # Fewer brackets than the depth limit can neither nest deeper than it nor be too many (a
    # C-speed count); only bodies with many have their structure checked, before parsing.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH:
        check_structure(raw)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            if codec is not None and codec != "utf-8":
                return parse_json(_transcode(raw, codec))
            if label is not None and codec is None:
                err = InvalidRequest(
                    f"The request body is not UTF-8 and its Content-Type's charset {label!r} "
                    "is not one this gateway reads; send JSON as UTF-8.",
                    code="unsupported_media_type",
                )
                err.status_code = 415
                raise err from None
            # (orjson calls any byte that is not UTF-8 "surrogates not allowed")
            raise InvalidRequest(
                f"The request body is not UTF-8 (byte {bad.start}): send JSON as UTF-8, or "
                "name its charset in the Content-Type header.",
                code="invalid_json",
            ) from None
        raise InvalidRequest(
            f"The request body is not valid JSON: {exc.msg}.", code="invalid_json"
        ) from None


_CHARSET = re.compile(r";\s*charset\s*=\s*\"?([^\";\s]+)", re.IGNORECASE)


def _charset_label(content_type: str | None) -> str | None:
    """The `charset` a Content-Type names, as written, or None."""
    if not content_type or ";" not in content_type:
        return None
    match = _CHARSET.search(content_type)
    return match[1] if match else None


def _codec(label: str | None) -> str | None:
    """Python's name for a charset label ("UTF-16LE" -> "utf-16-le"), None if unknown."""
    try:
        return codecs.lookup(label).name if label else None
    except LookupError:
        return None


def _transcode(raw: bytes, codec: str) -> bytes:
    try:
        return raw.decode(codec).encode("utf-8")
    except UnicodeError as bad:
        at = f" (byte {bad.start})" if isinstance(bad, UnicodeDecodeError) else ""
        raise InvalidRequest(
            f"The request body is not valid {codec} text{at}, the charset its Content-Type names.",
            code="invalid_json",
        ) from None


MAX_JSON_DEPTH = 128
# Objects and arrays one body may hold. A long agent conversation with tool schemas holds a
# few thousand; 4 MB of `[{},{},...]` holds a million, and parsing plus walking that many took
# the event loop (every tenant's requests) for seconds per request.
MAX_JSON_CONTAINERS = 100_000
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SQUARE = bytes.maketrans(b"{}", b"[]")


def check_structure(raw: bytes) -> None:
    """Refuse a body with too many objects and arrays, or nested too deep, from its bytes:
    strings taken out (C-speed regex), the brackets left counted and their nesting measured.
    Deeper values could not be forwarded (orjson writes 254 levels). Invalid JSON passes
    through to the parser, which says what is wrong with it."""
    brackets = _JSON_STRING.sub(b"", raw).translate(_SQUARE, _NOT_BRACKETS)
    if brackets.count(b"[") > MAX_JSON_CONTAINERS:
        raise InvalidRequest(
            f"The request body holds more than {MAX_JSON_CONTAINERS} JSON objects and arrays.",
            code="invalid_json",
        )
    # Each pass takes out the innermost pairs (C-speed); one still there after MAX_JSON_DEPTH
    # passes was nested deeper than that. A flat body is done in a few passes.
    for _ in range(MAX_JSON_DEPTH):
        inner = brackets.replace(b"[]", b"")
        if len(inner) == len(brackets):
            return
        brackets = inner
    if b"[]" in brackets:
        raise InvalidRequest(
            f"The request body nests deeper than {MAX_JSON_DEPTH} levels.", code="invalid_json"
        )


def decision_headers(ctx: RequestContext, *, final: bool) -> dict[str, str]:
    headers = {"x-request-id": ctx.request_id, "x-thriftgate-cache": ctx.cache_status}
    if ctx.deployment is not None:
        headers["x-thriftgate-deployment"] = ctx.deployment.name
    if ctx.route_reason:
        headers["x-thriftgate-route-reason"] = ctx.route_reason
    if final:
        headers["x-thriftgate-cost-usd"] = usd_text(ctx.cost_usd)
        headers["x-thriftgate-saved-usd"] = usd_text(ctx.savings.total_usd)
    headers.update(ctx.extra_headers)
    return headers


async def _sse(chunks: AsyncIterator[Json]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    yield b"data: [DONE]\n\n"


async def run_pipeline(request: Request, api: ApiName) -> tuple[RequestContext, Reply, Any]:
    """Read the body and run it through the pipeline: (context, reply, the body as sent)."""
    # No FastAPI dependencies on the hot routes: solving them costs ~6% of CPU under load.
    services: Services = request.app.state.services
    headers = header_map(request)
    rid = request_id_from(headers)
    headers["x-request-id"] = rid
    request.state.request_id = rid
    # The key before the body is decompressed or parsed: 9 KB of gzip can inflate to megabytes
    # of JSON that take seconds of the event loop, and nobody without a key may spend that.
    tenant = await services.keys.authenticate_headers(headers)
    body = await read_json(request, headers, services.settings.max_body_bytes)
    watch = DisconnectWatch(request.receive)
    try:
        ctx, reply = await services.pipeline.handle(api, body, headers, tenant)
    except asyncio.CancelledError:
        if watch.settled():  # the client hung up: the request is settled; nobody reads this
            raise ClientGone() from None
        raise watch.server_stopping() from None
    finally:
        watch.stop()
    return ctx, reply, body


async def _serve(request: Request, endpoint: EndpointName) -> Response:
    ctx, reply, _ = await run_pipeline(request, endpoint)
    return render(ctx, reply)


def render(ctx: RequestContext, reply: Reply) -> Response:
    if reply.chunks is not None:
        # Cost is known only at the end of a stream: it is in the ledger and, when the client
        # asked for usage, in the usage chunk's `x_thriftgate` (pipeline.priced).
        return ClientStream(
            _sse(reply.chunks),
            media_type="text/event-stream",
            headers={**decision_headers(ctx, final=False), "cache-control": "no-cache"},
        )
    return Response(
        orjson.dumps(reply.body),
        status_code=reply.status_code,
        media_type="application/json",
        headers=decision_headers(ctx, final=True),
    )


@router.post("/chat/completions", openapi_extra=OBJECT_BODY)
async def chat_completions(request: Request) -> Response:
    return await _serve(request, "chat")


@router.post("/completions", openapi_extra=OBJECT_BODY)
async def completions(request: Request) -> Response:
    return await _serve(request, "completions")


@router.post("/embeddings", openapi_extra=OBJECT_BODY)
async def embeddings(request: Request) -> Response:
    return await _serve(request, "embeddings")


async def _models_caller(request: Request, services: Services) -> TenantInfo:
    """The tenant calling a /v1/models route, read from the same header map as the POST routes,
    with their x-request-id rule: a valid one is echoed (errors too), else one is made."""
    headers = header_map(request)
    request.state.request_id = request_id_from(headers)
    return await services.keys.authenticate_headers(headers)


def _models_response(body: Json, request: Request) -> Response:
    return Response(
        orjson.dumps(body),
        media_type="application/json",
        headers={"x-request-id": request.state.request_id},
    )


@router.get("/models")
@router.head("/models", include_in_schema=False)
async def list_models(request: Request, services: ServicesDep) -> Response:
    tenant = await _models_caller(request, services)
    names = servable_models(tenant, services.catalog, services.file_config)
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "thriftgate"} for m in names]
    return _models_response({"object": "list", "data": data}, request)


@router.get("/models/{model_id:path}")
@router.head("/models/{model_id:path}", include_in_schema=False)
async def get_model(model_id: str, request: Request, services: ServicesDep) -> Response:
    tenant = await _models_caller(request, services)
    if model_id not in servable_models(tenant, services.catalog, services.file_config):
        from gateway.errors import NotFound

        raise NotFound(
            f"The model '{model_id}' does not exist or you do not have access to it.",
            code="model_not_found",
        )
    body = {"id": model_id, "object": "model", "created": 0, "owned_by": "thriftgate"}
    return _models_response(body, request)
