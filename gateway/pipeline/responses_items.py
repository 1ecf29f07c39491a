"""`/v1/responses` replies kept per tenant: their output items, so `item_reference` inputs
resolve, and the responses themselves, so `previous_response_id` continues one.

Clients that keep `store: true` (the API's default; the Vercel AI SDK's too) send earlier
assistant output back as `{"type": "item_reference", "id": "msg_..."}` instead of the item.
`ResponsesItemStage` keeps each reply's output items (message `msg_<ledger id>`, function calls
`fc_<ledger id>_<n>`) and its response with the conversation that went into it (a record under
`resp_<ledger id>`: `responses_store.py`) for `ttl_s`, and resolves references and previous
responses from the same tenant only.

Where they live: an in-process LRU, filled before the reply leaves (so an agent loop's next
step on this worker resolves at once), and the `response_items` table, written in the
background like the cache (so other workers and replicas resolve them too). Only a request
that carries references looks them up, and only ids the LRU lacks go to the database. Expired
rows, and each tenant's rows beyond `per_tenant`, are swept periodically.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.tenant_deletion import deleted_among
from gateway.accounting.tokenizer import estimate_prompt_tokens
from gateway.db.models import ResponseItem, as_utc, table
from gateway.db.session import FailureLog
from gateway.errors import GatewayError, InvalidRequest
from gateway.pipeline.context import Json, Reply, RequestContext
from gateway.pipeline.responses_reply import (
    echo_fields,
    response_from_chat,
    usage_from_chat,
    usage_from_counts,
)
from gateway.pipeline.responses_request import (
    ResponsesChatBody,
    chat_body_from_responses,
    previous_not_found,
)
from gateway.pipeline.responses_store import (
    DELETED,
    chain_of,
    input_items,
    is_record,
    only_items,
    record,
    turns,
)
from gateway.settings import Settings

log = logging.getLogger("thriftgate.responses")

DEFAULT_TTL_S = 24 * 3600.0
DEFAULT_PER_TENANT = 100_000
DEFAULT_LOCAL_ITEMS = 20_000
# Stored responses (whole conversations, up to a request body each) this process keeps while
# their rows are not written: in flight, or failed while the database is down.
DEFAULT_LOCAL_RECORDS = 1_000
SWEEP_INTERVAL_S = 600.0
MAX_ITEM_ID = 64  # the column's width; a longer id cannot be one of ours

_ITEMS = table(ResponseItem)
SWEEP_BATCH = 5_000  # rows per DELETE: a short transaction (SQLite's writers wait on it)


READ_BATCH = 1000  # ids per SELECT when resolving item references
# A read or deletion the database does not answer (a stalled server, a failover) is an
# unavailable store, as a key lookup is (auth.LOOKUP_TIMEOUT_S): retrieve's 503 came after
# asyncpg's 60 s connect timeout, and a turn continuing a stored response waited for ever.
STORE_TIMEOUT_S = 3.0


class StoreUnavailable(GatewayError):
    """The stored items and responses could not be read (the database is down): a 503 the
    client may retry, not a "not found" that says its conversation is gone."""

    status_code = 503
    type = "server_error"
    code = "store_unavailable"

    def __init__(self) -> None:
        super().__init__(
            "Stored responses and items cannot be read right now (the gateway's database "
            "is unavailable); retry shortly, or send the whole conversation in 'input'.",
            headers={"Retry-After": "1"},
        )


class ItemStore:
    """Items by (tenant, id): an LRU in front of the `response_items` table."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        per_tenant: int = DEFAULT_PER_TENANT,
        local_items: int = DEFAULT_LOCAL_ITEMS,
        sweep_interval_s: float = SWEEP_INTERVAL_S,
        conversations: bool = True,
    ) -> None:
        self.engine = engine
        # False (THRIFTGATE_RESPONSES_STORE_CONVERSATIONS): only output items are kept, for
        # item references; no request's input is written, and previous_response_id is refused
        self.conversations = conversations
        self.ttl_s = ttl_s
        self.per_tenant = per_tenant
        self.local_items = local_items
        self.sweep_interval_s = sweep_interval_s
        # (tenant id, item id) -> (expiry as time.time(), item)
        self._local: OrderedDict[tuple[str, str], tuple[float, Json]] = OrderedDict()
        self._records: OrderedDict[tuple[str, str], None] = OrderedDict()  # those in _local
        self.local_records = DEFAULT_LOCAL_RECORDS
        self._writes: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        # a database outage must not log a traceback per /v1/responses reply
        self._write_log = FailureLog(log, "storing response items")
        self._sweep_log = FailureLog(log, "sweeping response items")
        self._read_log = FailureLog(log, "reading stored responses")

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="response-items-sweep")

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._writes:  # items already answered: let their rows land
            await asyncio.gather(*self._writes, return_exceptions=True)

    # -- writes ------------------------------------------------------------------------
    def put(self, tenant_id: str, items: list[Json]) -> None:
        """Serve `items` from this process at once; write them to the table in the background."""
        expires = time.time() + self.ttl_s
        for item in items:
            self._remember(tenant_id, item["id"], expires, item)
            if is_record(item):
                self._hold_record((tenant_id, item["id"]))
        task = asyncio.create_task(self._write(tenant_id, items, expires))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _hold_record(self, key: tuple[str, str]) -> None:
        self._records[key] = None
        while len(self._records) > self.local_records:  # a database outage: bounded memory
            self._local.pop(self._records.popitem(last=False)[0], None)

    def _drop_record(self, key: tuple[str, str]) -> None:
        self._records.pop(key, None)
        self._local.pop(key, None)

    def _remember(self, tenant_id: str, item_id: str, expires: float, item: Json) -> None:
        key = (tenant_id, item_id)
        self._local[key] = (expires, item)
        self._local.move_to_end(key)
        while len(self._local) > self.local_items:
            self._local.popitem(last=False)

    async def _write(self, tenant_id: str, items: list[Json], expires: float) -> None:
        now = datetime.now(UTC)
        rows = [
            {
                "tenant_id": tenant_id,
                "item_id": item["id"],
                "item": item,
                "created_at": now,
                "expires_at": datetime.fromtimestamp(expires, UTC),
            }
            for item in items
        ]
        # the responses a stored one continues live as long as it does (its conversation)
        chain = [i for item in items if is_record(item) for i in chain_of(item)]
        try:
            async with self.engine.begin() as conn:
                # a request in flight when its tenant was deleted stores nothing for it
                if not await deleted_among(conn, [tenant_id]):
                    await conn.execute(insert(_ITEMS), rows)
                    for n in range(0, len(chain), READ_BATCH):
                        await conn.execute(
                            update(_ITEMS)
                            .where(
                                _ITEMS.c.tenant_id == tenant_id,
                                _ITEMS.c.item_id.in_(chain[n : n + READ_BATCH]),
                            )
                            .values(expires_at=rows[0]["expires_at"])
                        )
        except IntegrityError:  # ids are minted from unique ledger ids: a replay, nothing new
            pass
        except Exception:  # a lost write is a later "unknown item" 400 on another replica
            self._write_log.failed()
            return
        self._write_log.succeeded()
        # A stored response (its whole conversation: large) is read from the table once its
        # row is there; this process's copy only bridged the write.
        for item in items:
            if is_record(item):
                self._drop_record((tenant_id, item["id"]))

    # -- reads -------------------------------------------------------------------------
    async def get(self, tenant_id: str, ids: Iterable[str]) -> dict[str, Json]:
        """The stored items of `tenant_id` among `ids` (unknown and expired ones left out)."""
        now = time.time()
        found: dict[str, Json] = {}
        missing: list[str] = []
        for item_id in dict.fromkeys(ids):
            entry = self._local.get((tenant_id, item_id))
            if entry is not None and entry[0] > now:
                found[item_id] = entry[1]
            elif could_be_ours(item_id):
                missing.append(item_id)
        # In batches: one bind parameter per id, and a request may carry ~100,000 references
        # (asyncpg refuses more than 32,767 arguments: a 500).
        for i in range(0, len(missing), READ_BATCH):
            for item_id, expires, item in await self._read(tenant_id, missing[i : i + READ_BATCH]):
                found[item_id] = item
                self._remember(tenant_id, item_id, expires, item)
        return found

    async def _read(self, tenant_id: str, ids: list[str]) -> list[tuple[str, float, Json]]:
        query = select(_ITEMS.c.item_id, _ITEMS.c.expires_at, _ITEMS.c.item).where(
            _ITEMS.c.tenant_id == tenant_id,
            _ITEMS.c.item_id.in_(ids),
            _ITEMS.c.expires_at > datetime.now(UTC),
        )
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S), self.engine.connect() as conn:
                rows = (await conn.execute(query)).all()
        except Exception as exc:  # the database is down: not the same as "not found"
            self._read_log.failed()
            raise StoreUnavailable() from exc
        self._read_log.succeeded()
        return [(r.item_id, _timestamp(r.expires_at), r.item) for r in rows]

    # -- stored responses ----------------------------------------------------------------
    async def get_record(self, tenant_id: str, response_id: str) -> Json | None:
        """The stored response `response_id` of `tenant_id`, or None (unknown, expired,
        deleted)."""
        return (await self.get_records(tenant_id, [response_id])).get(response_id)

    async def get_records(self, tenant_id: str, ids: list[str]) -> dict[str, Json]:
        """The stored responses of `tenant_id` among `ids`. The table is asked first, so a
        deletion on any replica counts; this process's copy answers while its own write has
        not landed yet (or the table is down)."""
        ids = [i for i in dict.fromkeys(ids) if could_be_ours(i)]
        # Taken before the read: a copy is dropped once its write has landed, which may be
        # while the read runs (then the read sees the row or the copy answers).
        local = {i: self._local.get((tenant_id, i)) for i in ids}
        rows: dict[str, Json] = {}
        try:
            for n in range(0, len(ids), READ_BATCH):
                for item_id, _, item in await self._read(tenant_id, ids[n : n + READ_BATCH]):
                    rows[item_id] = item
        except StoreUnavailable:
            if any(copy is None for copy in local.values()):
                raise
            rows = {}
        now = time.time()
        found: dict[str, Json] = {}
        for i in ids:
            copy = local[i]
            kept: Json | None = rows.get(i)
            if i not in rows and copy is not None and copy[0] > now:
                kept = copy[1]
            if kept is not None and is_record(kept):
                found[i] = kept
        return found

    async def delete_record(self, tenant_id: str, response_id: str) -> bool:
        """Delete a stored response (its row keeps a tombstone until it expires, so no
        replica's copy serves it again) and its output items; False when there is none."""
        if self._writes:  # this process's writes in flight land first, so none revives it
            await asyncio.wait(list(self._writes), timeout=STORE_TIMEOUT_S)
        found = await self.get_record(tenant_id, response_id)
        self._drop_record((tenant_id, response_id))
        if found is None:
            return False
        tombstone = {"type": DELETED, "id": response_id}
        # its output items: no longer resolved as references (here and from the table)
        outputs = [str(item.get("id")) for item in found["response"]["output"]]
        for item_id in outputs:
            self._local.pop((tenant_id, item_id), None)
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S), self.engine.begin() as conn:
                await conn.execute(
                    update(_ITEMS)
                    .where(_ITEMS.c.tenant_id == tenant_id, _ITEMS.c.item_id == response_id)
                    .values(item=tombstone)
                )
                await conn.execute(
                    delete(_ITEMS).where(
                        _ITEMS.c.tenant_id == tenant_id,
                        _ITEMS.c.item_id.in_(outputs[:READ_BATCH]),
                    )
                )
        except Exception as exc:  # held here only (its write failed) and the table is down
            raise StoreUnavailable() from exc
        return True

    # -- retention ---------------------------------------------------------------------
    async def sweep(self) -> None:
        """Delete expired rows, then the rows beyond `per_tenant` of each tenant over it that
        expire first (a conversation still continued keeps its earlier turns), in batches.
        Only tenants over the cap are ranked: ranking every row of the table took 2 s at 1M
        items on each replica every ten minutes, with no tenant over it."""
        now = datetime.now(UTC)
        expired = select(_ITEMS.c.tenant_id, _ITEMS.c.item_id).where(_ITEMS.c.expires_at <= now)
        await self._delete_all(expired.limit(SWEEP_BATCH))
        over_cap = (
            select(_ITEMS.c.tenant_id)
            .group_by(_ITEMS.c.tenant_id)
            .having(func.count() > self.per_tenant)
        )
        async with self.engine.connect() as conn:
            tenants = list((await conn.execute(over_cap)).scalars())
        for tenant_id in tenants:
            oldest = (
                select(_ITEMS.c.tenant_id, _ITEMS.c.item_id)
                .where(_ITEMS.c.tenant_id == tenant_id)
                .order_by(_ITEMS.c.expires_at.desc(), _ITEMS.c.item_id)
                .offset(self.per_tenant)
                .limit(SWEEP_BATCH)
            )
            await self._delete_all(oldest)

    async def _delete_all(self, keys: Any) -> None:
        """Delete the rows whose (tenant_id, item_id) `keys` selects (a batch at most), one
        transaction a batch, until a batch comes short."""
        pair = tuple_(_ITEMS.c.tenant_id, _ITEMS.c.item_id)
        deleted = SWEEP_BATCH
        while deleted >= SWEEP_BATCH:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    delete(_ITEMS).where(pair.in_(keys.subquery().select()))
                )
            deleted = int(result.rowcount or 0)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                self._sweep_log.failed()
            else:
                self._sweep_log.succeeded()
            await asyncio.sleep(self.sweep_interval_s)


def could_be_ours(item_id: str) -> bool:
    """Whether `item_id` fits the table (a longer one, or one with a NUL that Postgres text
    refuses, cannot be one of ours: asking would be a database error)."""
    return len(item_id) <= MAX_ITEM_ID and "\x00" not in item_id


def _timestamp(value: datetime) -> float:
    return as_utc(value).timestamp()


class ResponsesItemStage:
    """Resolves a Responses request's item references and `previous_response_id` before
    anything else sees its body, and keeps its reply's output items and the response itself
    with its conversation (unless it said `store: false`)."""

    def __init__(self, store: ItemStore) -> None:
        self.store = store

    async def before(self, ctx: RequestContext) -> Reply | None:
        body = ctx.body
        if not isinstance(body, ResponsesChatBody) or not (body.references or body.previous):
            return None
        resolved = await resolve(self.store, ctx.tenant.id, body)
        if ctx.stream:  # as `Pipeline.handle` set it on the first translation
            resolved["stream_options"] = body["stream_options"]
        ctx.body = resolved
        ctx.prompt_tokens_estimate = estimate_prompt_tokens(resolved)
        return None

    async def after(self, ctx: RequestContext, reply: Reply) -> None:
        body = ctx.body
        if not isinstance(body, ResponsesChatBody) or not body.store or ctx.status_code >= 400:
            return
        chat = reply.body
        if not isinstance(chat, dict) or not chat.get("choices"):
            return
        response = stored_response(ctx, body, chat)
        if not self.store.conversations:
            self.store.put(ctx.tenant.id, list(response["output"]))
            return
        seen = {item.get("id") for item in body.history}
        own = input_items(body.raw["input"], body.referenced, ctx.ledger_id, seen)
        self.store.put(ctx.tenant.id, [*response["output"], record(response, own, body.chain)])


async def resolve(store: ItemStore, tenant_id: str, body: ResponsesChatBody) -> ResponsesChatBody:
    """`body` translated again with its item references and its previous response's
    conversation read from `store` (a 400 names an unknown one)."""
    earlier: list[Json] = []
    chain: list[str] = []
    if body.previous is not None:
        if not store.conversations:
            raise InvalidRequest(
                "This gateway does not keep conversations (its operator turned "
                "THRIFTGATE_RESPONSES_STORE_CONVERSATIONS off): send the whole conversation "
                "as 'input' instead of 'previous_response_id'.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        stored = await store.get_record(tenant_id, body.previous)
        if stored is None:  # unknown, expired, deleted, `store: false`, another tenant's
            raise previous_not_found(body.previous)
        earlier = [*await ancestors(store, tenant_id, stored, "previous_response_id"), stored]
        chain = [*chain_of(stored), stored["id"]]
    items = await store.get(tenant_id, body.references) if body.references else {}
    resolved = chat_body_from_responses(body.raw, only_items(items), turns(earlier))
    assert isinstance(resolved, ResponsesChatBody)
    resolved.created_at, resolved.chain = body.created_at, chain
    return resolved


async def ancestors(store: ItemStore, tenant_id: str, stored: Json, param: str) -> list[Json]:
    """The records of the responses `stored` continued, oldest first; a 400 naming the first
    one that is gone (deleted, or expired: each continuation keeps its chain alive)."""
    chain = chain_of(stored)
    found = await store.get_records(tenant_id, chain) if chain else {}
    for earlier in chain:
        if earlier not in found:
            raise InvalidRequest(
                f"The conversation of response '{stored['id']}' cannot be read: its earlier "
                f"response '{earlier}' was deleted or has expired. Send the conversation in "
                "'input' instead.",
                param=param,
                code="previous_response_not_found",
            )
    return [found[earlier] for earlier in chain]


def stored_response(ctx: RequestContext, body: ResponsesChatBody, chat: Json) -> Json:
    """The `response` object the client was sent for this reply (JSON or stream)."""
    u = ctx.usage
    return response_from_chat(
        chat,
        response_id="resp_" + ctx.ledger_id,
        created_at=body.created_at,
        model=ctx.model,
        echo=echo_fields(body.raw),
        usage=usage_from_chat(chat.get("usage"))
        or usage_from_counts(u.prompt_tokens, u.completion_tokens, u.cached_tokens),
    )


def stage_settings(settings: Settings) -> dict[str, Any]:
    """The store's retention, from `Settings`."""
    return {
        "ttl_s": settings.responses_items_ttl_s,
        "per_tenant": settings.responses_items_per_tenant,
        "conversations": settings.responses_store_conversations,
    }
