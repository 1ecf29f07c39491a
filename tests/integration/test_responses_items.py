"""`item_reference` inputs on `/v1/responses`: the official openai SDK against real gateways.

Clients that keep `store: true` (the Vercel AI SDK by default) send earlier output items back as
`{"type": "item_reference", "id": ...}`. The gateway keeps its replies' output items per tenant
(in-process and in the `response_items` table), so a reference resolves on the gateway that
answered, on another replica of the same database, and never for another tenant.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import event
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from gateway.db.migrate import upgrade_head
from gateway.db.session import create_engine
from gateway.pipeline.responses_items import ItemStore
from tests.support.servers import GatewayServer, MockUpstreamServer, mock_deployment, sql, wait_for
from tests.support.servers import sdk_client as client

pytestmark = pytest.mark.integration

MODEL = "gpt-4o-mini"
LOOKUP = {
    "type": "function",
    "name": "lookup",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
}
NO_CACHE = {"cache-control": "no-store"}


@pytest.fixture(scope="module")
def replica(
    session_tmp: Path, pg_url: str, mock_upstream: MockUpstreamServer, gateway: GatewayServer
) -> Iterator[GatewayServer]:
    """A second gateway process on the session gateway's database."""
    server = GatewayServer(
        session_tmp, pg_url, [mock_deployment("mock-mini", MODEL, mock_upstream)]
    )
    yield server
    server.stop()


def ref(item_id: str) -> dict[str, str]:
    return {"type": "item_reference", "id": item_id}


def stored_row(gateway: GatewayServer, item_id: str) -> list:
    return sql(gateway.db_url, "SELECT * FROM response_items WHERE item_id = $1", item_id)


def test_message_and_function_call_references_resolve(gateway, mock_upstream):
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    first = c.responses.create(
        model=MODEL, input="find the weather", tools=[LOOKUP], extra_headers=NO_CACHE
    )
    assert first.store is True
    call = next(item for item in first.output if item.type == "function_call")
    assert call.id.startswith("fc_")
    # the agent loop's next step, as the Vercel AI SDK sends it: the call by reference
    second = c.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": "find the weather"},
            ref(call.id),
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
        tools=[LOOKUP],
        extra_headers=NO_CACHE,
    )
    messages = mock_upstream.received()[-1]["body"]["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call.call_id,
                "type": "function",
                "function": {"name": "lookup", "arguments": call.arguments},
            }
        ],
    }
    assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}
    # multi-turn chat: the assistant's answer by reference
    answer = second.output[0]
    assert answer.type == "message" and answer.id.startswith("msg_")
    c.responses.create(
        model=MODEL,
        input=[{"role": "user", "content": "hi"}, ref(answer.id), {"role": "user", "content": "?"}],
        extra_headers=NO_CACHE,
    )
    messages = mock_upstream.received()[-1]["body"]["messages"]
    assert messages[1] == {"role": "assistant", "content": second.output_text}


def test_streamed_output_items_resolve(gateway, mock_upstream):
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    with c.responses.stream(model=MODEL, input="stream me", extra_headers=NO_CACHE) as stream:
        final = stream.get_final_response()
    c.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": "stream me"},
            ref(final.output[0].id),
            {"role": "user", "content": "again"},
        ],
        extra_headers=NO_CACHE,
    )
    messages = mock_upstream.received()[-1]["body"]["messages"]
    assert messages[1] == {"role": "assistant", "content": final.output_text}


def test_reference_resolves_on_another_replica(gateway, replica, mock_upstream):
    _, key = gateway.new_tenant()
    first = client(gateway, key).responses.create(
        model=MODEL, input="remember this", extra_headers=NO_CACHE
    )
    item_id = first.output[0].id
    wait_for(lambda: stored_row(gateway, item_id), timeout_s=10)  # written after the reply
    client(replica, key).responses.create(
        model=MODEL,
        input=[ref(item_id), {"role": "user", "content": "and now?"}],
        extra_headers=NO_CACHE,
    )
    messages = mock_upstream.received()[-1]["body"]["messages"]
    assert messages[0] == {"role": "assistant", "content": first.output_text}


def test_another_tenants_item_is_refused_like_an_unknown_one(gateway, replica):
    _, key = gateway.new_tenant()
    _, other_key = gateway.new_tenant()
    first = client(gateway, key).responses.create(
        model=MODEL, input="mine only", extra_headers=NO_CACHE
    )
    item_id = first.output[0].id
    wait_for(lambda: stored_row(gateway, item_id), timeout_s=10)
    for server in (gateway, replica):  # the LRU and the table both scope by tenant
        with pytest.raises(openai.BadRequestError) as err:
            client(server, other_key).responses.create(
                model=MODEL, input=[{"role": "user", "content": "x"}, ref(item_id)]
            )
        assert err.value.status_code == 400
        assert err.value.body["param"] == "input[1]"
        assert err.value.body["code"] == "item_not_found"
        assert "unknown or expired" in err.value.body["message"]


def test_unknown_reference_is_a_400_that_says_what_to_do(gateway):
    _, key = gateway.new_tenant()
    with pytest.raises(openai.BadRequestError) as err:
        client(gateway, key).responses.create(
            model=MODEL, input=[ref("msg_does_not_exist"), {"role": "user", "content": "x"}]
        )
    body = err.value.body
    assert body["param"] == "input[0]" and body["type"] == "invalid_request_error"
    assert "msg_does_not_exist" in body["message"] and "'store': false" in body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        client(gateway, key).responses.create(model=MODEL, input=[{"type": "item_reference"}])
    assert err.value.body["param"] == "input[0].id"


def test_more_references_than_postgres_takes_parameters_are_a_400_not_a_500(gateway):
    # one bind parameter per id in one SELECT: past 32,767 asyncpg refused it (a 500, and a
    # half-megabyte statement in the log); they are read in batches. Sent with httpx: the SDK
    # spends ~1.7 ms of its own per input item preparing the request.
    _, key = gateway.new_tenant()
    body = {"model": MODEL, "input": [ref(f"msg_{i:06d}") for i in range(33_000)]}
    r = httpx.post(
        gateway.url + "/responses",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )
    assert r.status_code == 400, r.text[:500]
    error = r.json()["error"]
    assert (error["code"], error["param"]) == ("item_not_found", "input[0]")


def test_store_false_keeps_nothing(gateway):
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    unstored = c.responses.create(
        model=MODEL, input="forget this", store=False, extra_headers=NO_CACHE
    )
    assert unstored.store is False
    with pytest.raises(openai.BadRequestError):
        c.responses.create(model=MODEL, input=[ref(unstored.output[0].id)])
    # a later stored reply's row lands; the unstored one's never does
    stored = c.responses.create(model=MODEL, input="keep this", extra_headers=NO_CACHE)
    wait_for(lambda: stored_row(gateway, stored.output[0].id), timeout_s=10)
    assert stored_row(gateway, unstored.output[0].id) == []


def _sweep_keeps_only_live_rows_within_the_cap(url: str) -> None:
    async def go() -> None:
        await upgrade_head(url)
        engine = create_engine(url, pool_size=1)
        try:
            store = ItemStore(engine, ttl_s=3600, per_tenant=2)
            store.put("t1", [{"id": f"msg_{i}", "type": "message"} for i in range(3)])
            store.put("t2", [{"id": "msg_x", "type": "message"}])
            expired = ItemStore(engine, ttl_s=-1)
            expired.put("t2", [{"id": "msg_old", "type": "message"}])
            await store.aclose()
            await expired.aclose()
            await store.sweep()
            fresh = ItemStore(engine)  # an empty LRU: what the table holds
            assert len(await fresh.get("t1", [f"msg_{i}" for i in range(3)])) == 2
            assert set(await fresh.get("t2", ["msg_x", "msg_old"])) == {"msg_x"}
            assert await fresh.get("t1", ["msg_x"]) == {}  # another tenant's item
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_sweep_on_postgres(fresh_pg_url):
    _sweep_keeps_only_live_rows_within_the_cap(fresh_pg_url)


def test_sweep_on_sqlite(tmp_path: Path):
    _sweep_keeps_only_live_rows_within_the_cap(f"sqlite+aiosqlite:///{tmp_path / 'tg.db'}")


# -- other /v1/responses/... operations (finding 2) -----------------------------------------


def test_input_tokens_are_counted_like_the_prompt(gateway):
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    counted = c.responses.input_tokens.count(model=MODEL, input="Say hello to the world")
    # the pipeline's count for the same chat body: 3 per message + 5 words + 3 for the reply
    assert counted.object == "response.input_tokens" and counted.input_tokens == 11
    first = c.responses.create(model=MODEL, input="count me", extra_headers=NO_CACHE)
    by_ref = c.responses.input_tokens.count(
        model=MODEL, input=[ref(first.output[0].id), {"role": "user", "content": "hi"}]
    )
    assert by_ref.input_tokens > 0
    with pytest.raises(openai.BadRequestError) as err:
        c.responses.input_tokens.count(model=MODEL, input=[ref("msg_nope")])
    assert err.value.body["param"] == "input[0]"
    with pytest.raises(openai.AuthenticationError):
        client(gateway, "tg-wrong").responses.input_tokens.count(model=MODEL, input="x")
    with pytest.raises(openai.NotFoundError) as missing:  # as `create` answers it
        c.responses.input_tokens.count(model="no-such-model", input="x")
    assert missing.value.code == "model_not_found"


def test_compact_and_posting_to_a_response_are_openai_shaped_404s(gateway):
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    with pytest.raises(openai.NotFoundError) as err:
        c.responses.compact(model=MODEL, input="long history")
    assert err.value.body["type"] == "invalid_request_error"
    assert "not supported" in err.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        c.post("/responses/resp_1", body={}, cast_to=object)


@pytest.mark.parametrize("path", ["/responses", "/realtime"])
def test_websocket_mode_is_refused_with_an_openai_error(gateway, path):
    _, key = gateway.new_tenant()
    url = gateway.url.replace("http://", "ws://") + path

    async def connect() -> InvalidStatus:
        with pytest.raises(InvalidStatus) as err:
            async with ws_connect(url, additional_headers={"Authorization": f"Bearer {key}"}):
                pass
        return err.value

    refused = asyncio.run(connect())
    assert refused.response.status_code == 404
    error = json.loads(refused.response.body)["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "websocket_not_supported"
    assert "WebSocket" in error["message"]


def _sweep_reads_only_tenants_over_their_cap(url: str) -> None:
    """The cap's sweep ranked every row of every tenant (a window over the whole table, each
    replica every ten minutes: 2 s at 1M items, none over the cap): it ranks only the rows of
    tenants over it, and deletes expired rows in batches."""
    statements: list[str] = []

    async def go() -> None:
        await upgrade_head(url)
        engine = create_engine(url, pool_size=1)
        event.listen(
            engine.sync_engine,
            "before_cursor_execute",
            lambda _c, _cur, stmt, *_: statements.append(stmt),
        )
        try:
            store = ItemStore(engine, ttl_s=3600, per_tenant=3)
            store.put("big", [{"id": f"msg_{i:02d}", "type": "message"} for i in range(12)])
            store.put("small", [{"id": "msg_s", "type": "message"}])
            await store.aclose()
            statements.clear()
            await store.sweep()
            swept = [s for s in statements if "response_items" in s]
            assert not any("OVER" in s.upper() for s in swept), swept
            fresh = ItemStore(engine)
            kept = await fresh.get("big", [f"msg_{i:02d}" for i in range(12)])
            assert len(kept) == 3
            assert set(await fresh.get("small", ["msg_s"])) == {"msg_s"}
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_sweep_ranks_only_tenants_over_the_cap_postgres(fresh_pg_url):
    _sweep_reads_only_tenants_over_their_cap(fresh_pg_url)


def test_sweep_ranks_only_tenants_over_the_cap_sqlite(tmp_path: Path):
    _sweep_reads_only_tenants_over_their_cap(f"sqlite+aiosqlite:///{tmp_path / 'tg.db'}")
