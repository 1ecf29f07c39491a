"""Stored `/v1/responses` responses: what is kept, and how it reads back (pure functions).

A request with `store` true (the default) keeps its `response` object, as the client was sent
it, with its own `input` (each item with an id) and, when it continued one with
`previous_response_id`, the chain of earlier responses it continued (their ids, oldest first).
A conversation is read back from its records: each earlier turn's input and output, in order.
Each record holds only its own turn, so a chain of n turns stores each input once (a copy of the
whole conversation per turn grew as n², 171 MB for ten turns with a 3 MB image each). Branching
from an older response is continuing its chain. `instructions` are not part of the
conversation: as on OpenAI, each request says its own. The records live in the item store
(`responses_items.py`) under the response's id, beside the output items.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from gateway.errors import invalid_value
from gateway.pipeline.responses_reply import output_text

Json = dict[str, Any]

RECORD = "thriftgate.stored_response"  # the `type` of a record in the item store
DELETED = "thriftgate.deleted_response"  # what a deleted record's row holds until it expires
MAX_PAGE = 100
DEFAULT_PAGE = 20
_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}


def record(response: Json, own_input: list[Json], chain: Sequence[str] = ()) -> Json:
    """What is kept of a response: the object, its own input items, and the ids of the
    responses it continued (oldest first)."""
    return {
        "type": RECORD,
        "id": response["id"],
        "response": response,
        "input": own_input,
        "chain": list(chain),
    }


def is_record(item: Json | None) -> bool:
    return isinstance(item, dict) and item.get("type") == RECORD


def only_items(found: Mapping[str, Json]) -> dict[str, Json]:
    """Stored items an `item_reference` may name: not response records or their tombstones."""
    return {k: v for k, v in found.items() if v.get("type") not in (RECORD, DELETED)}


def turns(records: Sequence[Json]) -> list[Json]:
    """The conversation these records (oldest first) hold: each one's input, then its output."""
    return [item for r in records for item in (*r["input"], *r["response"]["output"])]


def chain_of(stored: Json) -> list[str]:
    """The ids of the responses `stored` continued, oldest first."""
    chain: list[str] = stored.get("chain") or []
    return chain


def input_items(
    inp: Any, items: Mapping[str, Json], id_suffix: str, seen: Collection[Any] = ()
) -> list[Json]:
    """A (validated) request `input` as stored items, each with an id (`<kind>_<id_suffix>_<n>`
    where the client gave none), references replaced by the items they name; those whose id
    is in `seen` (the previous response's conversation) are left out, as they were sent."""
    if isinstance(inp, str):
        inp = [{"role": "user", "content": inp}]
    out: list[Json] = []
    for n, item in enumerate(inp):
        if item.get("id") is not None and item.get("id") in seen:
            continue
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "item_reference":
            out.append(items[item["id"]])
            continue
        item = {**item, "type": kind}
        if kind == "message":
            item["content"] = _parts(item["role"], item["content"])
        item.setdefault("status", "completed")
        if not item.get("id"):
            item["id"] = f"{_PREFIXES.get(str(kind), 'item')}_{id_suffix}_{n}"
        out.append(item)
    return out


def _parts(role: str, content: Any) -> list[Json]:
    """A message's content as the API lists it: parts, an assistant's as `output_text`."""
    if isinstance(content, str):
        return [output_text(content) if role == "assistant" else _input_text(content)]
    parts: list[Json] = []
    for part in content:
        if role == "assistant" and part.get("type") in ("output_text", "input_text"):
            parts.append({**output_text(part["text"]), **part, "type": "output_text"})
        elif part.get("type") == "input_image":
            parts.append({"detail": "auto", "file_id": None, **part})  # as the API lists it
        else:
            parts.append(part)
    return parts


def _input_text(text: str) -> Json:
    return {"type": "input_text", "text": text}


def input_items_page(conversation: Sequence[Json], query: Mapping[str, str]) -> Json:
    """`GET /v1/responses/{id}/input_items`: a page of the conversation that went into a
    stored response (`order` desc by default, `limit` 1-100, `after` / `before` an item id)."""
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid_value("'order' must be 'asc' or 'desc'.", "order")
    limit = _limit(query.get("limit"))
    items = list(conversation)
    if order == "desc":
        items.reverse()
    ids = [item.get("id") for item in items]
    start, end = 0, len(items)
    for name in ("after", "before"):
        cursor = query.get(name)
        if cursor is None:
            continue
        if cursor not in ids:
            raise invalid_value(
                f"'{name}': no input item with id '{cursor}' in this response.", name
            )
        if name == "after":
            start = ids.index(cursor) + 1
        else:
            end = ids.index(cursor)
    window = items[start:end]
    # `before` alone takes the items right before the cursor, as a backwards page
    page = window[-limit:] if "before" in query and "after" not in query else window[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(window) > len(page),
    }


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_PAGE
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise invalid_value(f"'limit' must be an integer from 1 to {MAX_PAGE}.", "limit")
    return limit


def deleted(response_id: str) -> Json:
    """`DELETE /v1/responses/{id}`'s answer."""
    return {"id": response_id, "object": "response", "deleted": True}
