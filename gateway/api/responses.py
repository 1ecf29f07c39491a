"""The OpenAI Responses API (`/v1/responses`): parse, run the chat pipeline, render a response.

The request is translated into a chat body inside the pipeline (`pipeline/responses_request.py`),
so every stage applies unchanged; this module renders the chat reply as a `response` object, or
the chat chunk stream as Responses stream events (`event: <type>` + `data: {...}`). Responses
with `store` true are kept for a while with their conversation (`pipeline/responses_items.py`),
so they can be retrieved, deleted, listed (`input_items`) and continued
(`previous_response_id`); cancelling one is a 400, as none runs in the background.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Request, WebSocket
from starlette.responses import Response

from gateway.accounting.tokenizer import count_prompt
from gateway.api.deps import ServicesDep, header_map
from gateway.api.disconnect import ClientStream
from gateway.api.openai import OBJECT_BODY, decision_headers, read_json, run_pipeline
from gateway.errors import InvalidRequest, NotFound
from gateway.pipeline.context import Json, Reply, RequestContext, TenantInfo
from gateway.pipeline.pipeline import request_id_from
from gateway.pipeline.responses_items import ItemStore, ancestors, resolve
from gateway.pipeline.responses_reply import (
    echo_fields,
    response_from_chat,
    usage_from_chat,
    usage_from_counts,
)
from gateway.pipeline.responses_request import (
    ResponsesChatBody,
    chat_body_from_responses,
    responses_param,
)
from gateway.pipeline.responses_store import deleted, input_items_page, turns
from gateway.pipeline.responses_stream import ResponsesStream, response_events
from gateway.pipeline.route import resolve_candidates
from gateway.services import Services

router = APIRouter(prefix="/v1", tags=["openai"])


def render_responses(ctx: RequestContext, reply: Reply, raw: Json) -> Response:
    """The chat pipeline's reply to a Responses request, as a `response` object or its stream."""
    echo = echo_fields(raw)
    response_id = "resp_" + ctx.ledger_id
    # the time its stored copy says too
    body = ctx.body
    created_at = body.created_at if isinstance(body, ResponsesChatBody) else int(time.time())

    def counted_usage() -> Json:  # when the upstream sent none: what the ledger counted
        u = ctx.usage
        return usage_from_counts(u.prompt_tokens, u.completion_tokens, u.cached_tokens)

    if reply.chunks is not None:
        translator = ResponsesStream(
            response_id, created_at, ctx.model, echo, fallback_usage=counted_usage
        )
        return ClientStream(
            _sse(response_events(reply.chunks, translator)),
            media_type="text/event-stream",
            headers={**decision_headers(ctx, final=False), "cache-control": "no-cache"},
        )
    chat = reply.body or {}
    answer: Json
    if reply.status_code >= 400 or "error" in chat:
        answer = chat
    else:
        usage = usage_from_chat(chat.get("usage")) or counted_usage()
        answer = response_from_chat(
            chat,
            response_id=response_id,
            created_at=created_at,
            model=ctx.model,
            echo=echo,
            usage=usage,
        )
    return Response(
        orjson.dumps(answer),
        status_code=reply.status_code,
        media_type="application/json",
        headers=decision_headers(ctx, final=True),
    )


async def _sse(events: AsyncIterator[Json]) -> AsyncIterator[bytes]:
    # The Responses stream ends when its terminal event has been sent: no `[DONE]` line.
    async for event in events:
        yield b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


@router.post("/responses", openapi_extra=OBJECT_BODY)
async def create_response(request: Request) -> Response:
    ctx, reply, raw = await run_pipeline(request, "responses")
    return render_responses(ctx, reply, raw)


# The model whose tokenizer counts a request that names none (OpenAI's counting default).
COUNT_MODEL = "gpt-4o"


async def _authenticate(request: Request, services: Services) -> TenantInfo:
    """The caller's tenant, with the request id every answer (errors too) carries."""
    headers = header_map(request)
    request.state.request_id = request_id_from(headers)
    return await services.keys.authenticate_headers(headers)


# Declared before the `{response_id}` routes so these names are not taken for response ids.
@router.post("/responses/input_tokens", openapi_extra=OBJECT_BODY)
async def count_input_tokens(request: Request, services: ServicesDep) -> Response:
    """The prompt tokens a Responses request would send, counted as the ledger counts them
    when the upstream reports none (tiktoken over the translated chat body)."""
    tenant = await _authenticate(request, services)
    raw = await read_json(request, header_map(request), services.settings.max_body_bytes)
    if isinstance(raw, dict) and not raw.get("model"):
        raw = {**raw, "model": COUNT_MODEL}  # optional here, unlike in `create`
    elif isinstance(raw, dict) and isinstance(raw["model"], str):
        # a model named must be one the tenant may use, as in `create` (a 404 otherwise)
        resolve_candidates(raw["model"], tenant, services.catalog, services.file_config)
    try:
        body = chat_body_from_responses(raw)
        if isinstance(body, ResponsesChatBody) and (body.references or body.previous):
            store = services.response_items
            body = await resolve(store, tenant.id, body) if store is not None else body
    except InvalidRequest as exc:
        exc.param = responses_param(exc.param)
        raise
    tokens = count_prompt(body, body["model"])
    return Response(
        orjson.dumps({"object": "response.input_tokens", "input_tokens": tokens}),
        media_type="application/json",
        headers={"x-request-id": request.state.request_id},
    )


@router.post("/responses/compact", openapi_extra=OBJECT_BODY)
async def compact_response(request: Request, services: ServicesDep) -> Response:
    await _authenticate(request, services)
    raise NotFound(
        "Compacting a conversation ('POST /v1/responses/compact') is not supported by this "
        "gateway; send the conversation in 'input' as it is.",
        code="not_implemented",
    )


@router.post("/responses/{response_id}")
async def post_to_response(response_id: str, request: Request, services: ServicesDep) -> Response:
    await _authenticate(request, services)
    raise NotFound(
        f"No operation 'POST /v1/responses/{response_id}': create a response with "
        "'POST /v1/responses', continuing it with 'previous_response_id'.",
        code="not_found",
    )


WEBSOCKET_REFUSAL = (
    "WebSocket mode is not supported by this gateway: send POST /v1/responses (with "
    "'stream': true for server-sent events); the Realtime API is not available."
)


@router.websocket("/responses")
@router.websocket("/realtime")
async def refuse_websocket(websocket: WebSocket) -> None:
    """`client.responses.connect()` / realtime clients: an OpenAI-shaped 404 instead of the
    server's bare 403 for a WebSocket path it does not know."""
    body = {
        "error": {
            "message": WEBSOCKET_REFUSAL,
            "type": "invalid_request_error",
            "param": None,
            "code": "websocket_not_supported",
        }
    }
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        response = Response(orjson.dumps(body), 404, media_type="application/json")
        await websocket.send_denial_response(response)
        return
    # A server without the denial extension: accept, say why, and close as a policy refusal.
    await websocket.accept()
    await websocket.send_text(orjson.dumps({"type": "error", **body}).decode())
    await websocket.close(code=1008, reason="WebSocket mode is not supported")


async def _stored(
    request: Request, services: Services, response_id: str
) -> tuple[ItemStore, TenantInfo, Json]:
    """The caller's stored response `response_id` (with the store and the tenant); a 404
    when there is none (unknown, expired, deleted, sent with `store: false`, another
    tenant's)."""
    tenant = await _authenticate(request, services)
    store = services.response_items
    found = await store.get_record(tenant.id, response_id) if store is not None else None
    if store is None or found is None:
        raise _not_found(response_id, store)
    return store, tenant, found


def _not_found(response_id: str, store: ItemStore | None = None) -> NotFound:
    if store is not None and not store.conversations:
        return NotFound(
            f"Response with id '{response_id}' not found: this gateway does not keep responses "
            "(its operator turned THRIFTGATE_RESPONSES_STORE_CONVERSATIONS off).",
            param="response_id",
            code="response_not_found",
        )
    return NotFound(
        f"Response with id '{response_id}' not found: this gateway keeps responses sent with "
        "'store' true (the default) for a limited time, for the tenant that created them.",
        param="response_id",
        code="response_not_found",
    )


def _json(request: Request, body: Json, status_code: int = 200) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status_code,
        media_type="application/json",
        headers={"x-request-id": request.state.request_id},
    )


@router.get("/responses/{response_id}")
async def get_response(response_id: str, request: Request, services: ServicesDep) -> Response:
    _, _, stored = await _stored(request, services, response_id)
    if request.query_params.get("stream") in ("true", "1"):
        raise InvalidRequest(
            "'stream' is not supported when retrieving a response: this gateway keeps the "
            "finished response only; retrieve it without 'stream'.",
            param="stream",
            code="unsupported_parameter",
        )
    return _json(request, stored["response"])


@router.delete("/responses/{response_id}")
async def delete_response(response_id: str, request: Request, services: ServicesDep) -> Response:
    tenant = await _authenticate(request, services)
    store = services.response_items
    if store is None or not await store.delete_record(tenant.id, response_id):
        raise _not_found(response_id, store)
    return _json(request, deleted(response_id))


# Read from the query by hand (OpenAI-shaped 400s); declared here for the OpenAPI schema.
INPUT_ITEMS_QUERY = {
    "parameters": [
        {"name": "after", "in": "query", "required": False, "schema": {"type": "string"}},
        {"name": "before", "in": "query", "required": False, "schema": {"type": "string"}},
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
        },
        {
            "name": "order",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "enum": ["asc", "desc"], "default": "desc"},
        },
    ]
}


@router.get("/responses/{response_id}/input_items", openapi_extra=INPUT_ITEMS_QUERY)
async def list_input_items(response_id: str, request: Request, services: ServicesDep) -> Response:
    store, tenant, stored = await _stored(request, services, response_id)
    earlier = await ancestors(store, tenant.id, stored, "response_id")
    conversation = [*turns(earlier), *stored["input"]]
    return _json(request, input_items_page(conversation, request.query_params))


@router.post("/responses/{response_id}/cancel")
async def cancel_response(response_id: str, request: Request, services: ServicesDep) -> Response:
    await _stored(request, services, response_id)
    raise InvalidRequest(
        "Only responses created with 'background': true can be cancelled; this gateway "
        "answers every response in its request, so there is nothing running to cancel.",
        param="response_id",
        code="invalid_value",
    )
