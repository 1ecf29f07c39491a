"""Stored responses on `/v1/responses`, used as an app on OpenAI's Responses API uses them:
`previous_response_id` chains, `retrieve`, `delete`, `input_items.list`, through the official
openai SDK against real gateways, the mock upstream and Postgres.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.db.migrate import upgrade_head
from gateway.db.session import create_engine
from gateway.pipeline.responses_items import ItemStore, StoreUnavailable
from gateway.pipeline.responses_store import record
from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    ledger_row,
    mock_deployment,
    sql,
    wait_for,
)
from tests.support.servers import sdk_client as client

pytestmark = pytest.mark.integration

MODEL = "gpt-4o-mini"
NO_CACHE = {"cache-control": "no-store"}
LOOKUP = {
    "type": "function",
    "name": "lookup",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
}


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


def sent_messages(mock: MockUpstreamServer) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = mock.received()[-1]["body"]["messages"]
    return messages


def text_of(message: dict[str, Any]) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(p["text"] for p in content)


def test_a_chain_continues_the_stored_conversation(gateway, mock_upstream):
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    first = c.responses.create(
        model=MODEL, input="my name is Ada", instructions="Be terse.", extra_headers=NO_CACHE
    )
    second = c.responses.with_raw_response.create(
        model=MODEL,
        input="what is my name",
        previous_response_id=first.id,
        extra_headers=NO_CACHE,
    )
    reply = second.parse()
    # the whole conversation went upstream; the first turn's instructions did not (OpenAI's
    # semantics: each request says its own)
    messages = sent_messages(mock_upstream)
    assert [(m["role"], text_of(m)) for m in messages] == [
        ("user", "my name is Ada"),
        ("assistant", first.output_text),
        ("user", "what is my name"),
    ]
    assert reply.previous_response_id == first.id and reply.instructions is None
    # the ledger bills the replayed conversation, as the usage says
    row = ledger_row(gateway, second.headers["x-request-id"])
    assert row["endpoint"] == "responses"
    assert row["prompt_tokens"] == reply.usage.input_tokens > first.usage.input_tokens
    # a third turn, with new instructions, carries both earlier turns
    third = c.responses.create(
        model=MODEL,
        input="and now?",
        instructions="Be kind.",
        previous_response_id=reply.id,
        extra_headers=NO_CACHE,
    )
    assert [(m["role"], text_of(m)) for m in sent_messages(mock_upstream)] == [
        ("system", "Be kind."),
        ("user", "my name is Ada"),
        ("assistant", first.output_text),
        ("user", "what is my name"),
        ("assistant", reply.output_text),
        ("user", "and now?"),
    ]
    # branching from an older response leaves the later turns out
    c.responses.create(
        model=MODEL, input="other branch", previous_response_id=first.id, extra_headers=NO_CACHE
    )
    assert [text_of(m) for m in sent_messages(mock_upstream)] == [
        "my name is Ada",
        first.output_text,
        "other branch",
    ]
    assert third.previous_response_id == reply.id


def test_retrieve_delete_and_input_items(gateway):
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    first = c.responses.create(model=MODEL, input="one", extra_headers=NO_CACHE)
    second = c.responses.create(
        model=MODEL,
        input=[{"role": "user", "content": "two"}, {"role": "user", "content": "three"}],
        previous_response_id=first.id,
        metadata={"session": "s1"},
        extra_headers=NO_CACHE,
    )
    got = c.responses.retrieve(second.id)
    assert got.model_dump() == second.model_dump()
    assert got.metadata == {"session": "s1"} and got.output_text == second.output_text
    # the conversation that went into `second`, newest first (the API's default order)
    items = c.responses.input_items.list(second.id)
    assert [(i.type, getattr(i, "role", None)) for i in items.data] == [
        ("message", "user"),
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
    ]
    assert items.data[0].content[0].text == "three" and items.data[-1].content[0].text == "one"
    assert items.data[2].id == first.output[0].id and not items.has_more
    # pages: asc, two at a time, followed by the SDK's auto-pagination (`after`)
    page = c.responses.input_items.list(second.id, order="asc", limit=2)
    assert [i.content[0].text for i in page.data] == ["one", first.output_text]
    assert page.has_more and page.last_id == first.output[0].id
    every = [i.id for i in c.responses.input_items.list(second.id, order="asc", limit=1)]
    assert every == [i.id for i in reversed(items.data)] and len(set(every)) == 4
    with pytest.raises(openai.BadRequestError) as err:
        c.responses.input_items.list(second.id, limit=101)
    assert err.value.body["param"] == "limit"
    # deleting the first turn: gone with its output items, and no longer continued; the
    # second still is
    assert c.responses.delete(first.id) is None
    with pytest.raises(openai.BadRequestError) as ref:
        c.responses.create(
            model=MODEL, input=[{"type": "item_reference", "id": first.output[0].id}]
        )
    assert ref.value.code == "item_not_found"
    with pytest.raises(openai.NotFoundError) as missing:
        c.responses.retrieve(first.id)
    assert missing.value.code == "response_not_found"
    with pytest.raises(openai.NotFoundError):
        c.responses.delete(first.id)
    with pytest.raises(openai.BadRequestError) as gone:
        c.responses.create(model=MODEL, input="x", previous_response_id=first.id)
    assert gone.value.body["param"] == "previous_response_id"
    assert gone.value.code == "previous_response_not_found"
    # the second is still there, but its conversation is not whole: a 400 naming the first
    assert c.responses.retrieve(second.id).id == second.id
    with pytest.raises(openai.BadRequestError) as broken:
        c.responses.create(model=MODEL, input="four", previous_response_id=second.id)
    assert broken.value.code == "previous_response_not_found" and first.id in broken.value.message
    # nothing runs in the background to cancel
    with pytest.raises(openai.BadRequestError):
        c.responses.cancel(second.id)


def test_unknown_unstored_and_other_tenants_responses_are_not_found(gateway):
    _, key = gateway.new_tenant()
    _, other_key = gateway.new_tenant()
    c, other = client(gateway, key), client(gateway, other_key)
    kept = c.responses.create(model=MODEL, input="secret plans", extra_headers=NO_CACHE)
    unkept = c.responses.create(model=MODEL, input="private", store=False, extra_headers=NO_CACHE)
    assert unkept.store is False
    for response_id, who in ((kept.id, other), (unkept.id, c), ("resp_nope", c)):
        with pytest.raises(openai.BadRequestError) as err:
            who.responses.create(model=MODEL, input="go on", previous_response_id=response_id)
        assert err.value.code == "previous_response_not_found"
        for call in (who.responses.retrieve, who.responses.delete, who.responses.input_items.list):
            with pytest.raises(openai.NotFoundError):
                call(response_id)
    # the other tenant's attempts deleted nothing
    assert c.responses.retrieve(kept.id).output_text == kept.output_text
    # a turn with store false continues a stored one, and is not kept itself
    cont = c.responses.create(
        model=MODEL, input="more", previous_response_id=kept.id, store=False, extra_headers=NO_CACHE
    )
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(cont.id)


def test_a_function_call_round_trip_by_previous_response_id(gateway, mock_upstream):
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    first = c.responses.create(
        model=MODEL, input="weather in Paris", tools=[LOOKUP], extra_headers=NO_CACHE
    )
    call = first.output[0]
    assert call.type == "function_call"
    second = c.responses.create(
        model=MODEL,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        previous_response_id=first.id,
        tools=[LOOKUP],
        extra_headers=NO_CACHE,
    )
    assert sent_messages(mock_upstream)[1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": "lookup", "arguments": call.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"},
    ]
    assert second.output_text == "The tool said: sunny"
    kinds = [i.type for i in c.responses.input_items.list(second.id, order="asc")]
    assert kinds == ["message", "function_call", "function_call_output"]


def test_items_already_in_the_chain_are_not_sent_twice(gateway, mock_upstream):
    # The Vercel AI SDK with previousResponseId also sends the earlier output items (by
    # reference with store on); they are in the chain already
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    first = c.responses.create(
        model=MODEL, input="weather in Rome", tools=[LOOKUP], extra_headers=NO_CACHE
    )
    call = first.output[0]
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "rain"}
    as_sent = call.model_dump(exclude_none=True)
    for earlier in ({"type": "item_reference", "id": call.id}, as_sent):
        second = c.responses.create(
            model=MODEL,
            input=[earlier, result],
            previous_response_id=first.id,
            tools=[LOOKUP],
            extra_headers=NO_CACHE,
        )
        messages = sent_messages(mock_upstream)
        assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
        assert len(messages[1]["tool_calls"]) == 1
        listed = c.responses.input_items.list(second.id, order="asc")
        assert [i.type for i in listed] == ["message", "function_call", "function_call_output"]


def test_a_streamed_turn_is_stored_and_continued_on_another_replica(gateway, replica):
    _, key = gateway.new_tenant()
    events = list(
        client(gateway, key).responses.create(
            model=MODEL, input="stream me", stream=True, extra_headers=NO_CACHE
        )
    )
    final = events[-1].response
    other = client(replica, key)
    # the other process reads the row once the background write has landed
    got = wait_for(lambda: _retrieve_or_none(other, final.id))
    # the stream's last event also says what this request cost (x_thriftgate, as a chat
    # stream's usage chunk does); the stored response is the response itself
    streamed = final.model_dump()
    assert set(streamed.pop("x_thriftgate")) == {"cost_usd", "saved_usd"}
    assert got is not None and got.model_dump() == streamed
    events = list(
        other.responses.create(
            model=MODEL,
            input="again",
            previous_response_id=final.id,
            stream=True,
            extra_headers=NO_CACHE,
        )
    )
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.previous_response_id == final.id
    # deleted on one replica, gone on the other
    client(gateway, key).responses.delete(final.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(final.id)


def _retrieve_or_none(c: openai.OpenAI, response_id: str) -> Any:
    try:
        return c.responses.retrieve(response_id)
    except openai.NotFoundError:
        return None


def test_ids_that_cannot_be_stored_are_not_found_not_database_errors(gateway):
    # a NUL cannot be in Postgres text: asking the table for it was a 500 (item references)
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    with pytest.raises(openai.BadRequestError) as err:
        c.responses.create(model=MODEL, input="x", previous_response_id="resp_\x00")
    assert err.value.code == "previous_response_not_found"
    with pytest.raises(openai.BadRequestError) as ref:
        c.responses.create(model=MODEL, input=[{"type": "item_reference", "id": "msg_\x00"}])
    assert ref.value.code == "item_not_found"
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve("resp_\x00")
    assert "Traceback" not in gateway.log()


def test_input_tokens_count_the_previous_conversation(gateway):
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    first = c.responses.create(
        model=MODEL, input="a fairly long first question about tides", extra_headers=NO_CACHE
    )
    alone = c.responses.input_tokens.count(model=MODEL, input="next")
    chained = c.responses.input_tokens.count(
        model=MODEL, input="next", previous_response_id=first.id
    )
    assert chained.input_tokens > alone.input_tokens + 8
    with pytest.raises(openai.BadRequestError) as err:
        c.responses.input_tokens.count(model=MODEL, input="x", previous_response_id="resp_nope")
    assert err.value.code == "previous_response_not_found"


def _records(n: int) -> list[dict[str, Any]]:
    return [
        record({"id": f"resp_{i}", "output": []}, [{"id": "m", "x": "y" * 100}]) for i in range(n)
    ]


def test_unwritten_responses_are_bounded_and_an_outage_is_no_not_found(tmp_path: Path):
    # A stored response holds its whole conversation: while the database is down the process
    # keeps the newest few (they answer), not every one since the outage began; the others
    # were a 400 previous_response_not_found (and an item reference a 500).
    async def go() -> None:
        down = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'tg.db'}")
        url = f"sqlite+aiosqlite:///{tmp_path / 'tg.db'}"
        await upgrade_head(url)
        up = create_engine(url)
        try:
            store = ItemStore(down)
            store.local_records = 2
            for item in _records(5):
                store.put("t1", [item])
            await store.aclose()
            assert [await store.get_record("t1", f"resp_{i}") for i in (3, 4)] == _records(5)[3:]
            # the others cannot be read: unavailable (a 503 to retry), not "not found"
            for i in range(3):
                with pytest.raises(StoreUnavailable):
                    await store.get_record("t1", f"resp_{i}")
            with pytest.raises(StoreUnavailable):
                await store.get("t1", ["msg_1"])
            with pytest.raises(StoreUnavailable):  # was an uncaught database error (a 500)
                await store.delete_record("t1", "resp_4")
            # written: read from the table, no copy held
            written = ItemStore(up)
            written.put("t1", _records(1))
            await written.aclose()
            assert not written._local
            assert (await written.get_record("t1", "resp_0")) == _records(1)[0]
        finally:
            await down.dispose()
            await up.dispose()

    asyncio.run(go())


def test_a_database_outage_is_a_503_to_retry_not_a_lost_conversation(
    tmp_path: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer
):
    gw = GatewayServer(tmp_path, fresh_pg_url, [mock_deployment("mock-mini", MODEL, mock_upstream)])
    db = fresh_pg_url.rsplit("/", 1)[1]
    admin_url = fresh_pg_url.rsplit("/", 1)[0] + "/postgres"
    try:
        _, key = gw.new_tenant()
        c = client(gw, key)
        first = c.responses.create(model=MODEL, input="remember me", extra_headers=NO_CACHE)
        assert wait_for(
            lambda: sql(gw.db_url, "SELECT 1 FROM response_items WHERE item_id = $1", first.id)
        )
        sql(admin_url, f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
        sql(
            admin_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            db,
        )
        try:
            for ask in (
                {"previous_response_id": first.id, "input": "go on"},
                # one this process does not hold (its own are answered from memory)
                {"input": [{"type": "item_reference", "id": "msg_from_another_replica"}]},
            ):
                with pytest.raises(openai.InternalServerError) as err:
                    c.responses.create(model=MODEL, extra_headers=NO_CACHE, **ask)
                assert err.value.status_code == 503 and err.value.code == "store_unavailable"
                assert err.value.response.headers["retry-after"] == "1"
            with pytest.raises(openai.InternalServerError) as got:
                c.responses.retrieve(first.id)
            assert got.value.status_code == 503
        finally:
            sql(admin_url, f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
        assert c.responses.create(
            model=MODEL, previous_response_id=first.id, input="go on", extra_headers=NO_CACHE
        ).output_text
    finally:
        gw.stop()


def test_a_cache_hit_is_stored_and_continued(gateway, mock_upstream):
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    question = "what is the tallest mountain on the moon? (stored hit)"
    c.responses.create(model=MODEL, input=question, temperature=0)
    hit = c.responses.with_raw_response.create(model=MODEL, input=question, temperature=0)
    assert hit.headers["x-thriftgate-cache"] == "hit-exact"
    answer = hit.parse()
    assert c.responses.retrieve(answer.id).model_dump() == answer.model_dump()
    c.responses.create(
        model=MODEL, input="and on Mars?", previous_response_id=answer.id, extra_headers=NO_CACHE
    )
    assert [text_of(m) for m in sent_messages(mock_upstream)] == [
        question,
        answer.output_text,
        "and on Mars?",
    ]


def test_each_turn_is_stored_once_and_a_continued_chain_stays_alive(gateway, mock_upstream):
    # Each record held a copy of the whole conversation: ten turns with a 3 MB image each
    # stored 171 MB. A record holds its own turn, and continuing a chain extends the life of
    # its earlier turns (they would expire 24 h after each was created).
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    ids = [c.responses.create(model=MODEL, input="turn 0 " + "x" * 5000, extra_headers=NO_CACHE).id]
    for n in range(1, 4):
        ids.append(
            c.responses.create(
                model=MODEL,
                input=f"turn {n} " + "x" * 5000,
                previous_response_id=ids[-1],
                extra_headers=NO_CACHE,
            ).id
        )

    def rows() -> list:
        return sql(
            gateway.db_url,
            "SELECT item_id, length(item::text) AS size, expires_at FROM response_items"
            " WHERE item_id = ANY($1::text[])",
            ids,
        )

    landed = wait_for(lambda: len(rows()) == 4 and rows())
    assert landed
    sizes = {r["item_id"]: r["size"] for r in landed}
    assert max(sizes.values()) < 2 * min(sizes.values())  # no record grows with the chain
    # the whole conversation still goes upstream, and is listed
    assert [text_of(m)[:6] for m in sent_messages(mock_upstream)][::2] == [
        "turn 0",
        "turn 1",
        "turn 2",
        "turn 3",
    ]
    listed = c.responses.input_items.list(ids[-1], order="asc", limit=100)
    assert [i.role for i in listed.data] == ["user", "assistant"] * 3 + ["user"]
    expiry = {r["item_id"]: r["expires_at"] for r in landed}
    assert expiry[ids[0]] == expiry[ids[3]]  # the first turn lives as long as the last


def test_an_operator_can_keep_no_conversations(
    session_tmp: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer
) -> None:
    """THRIFTGATE_RESPONSES_STORE_CONVERSATIONS=false: no request's input is written; output
    items still resolve as item references; previous_response_id says why it cannot work."""
    server = GatewayServer(
        session_tmp,
        fresh_pg_url,
        [mock_deployment("mock-mini", MODEL, mock_upstream)],
        extra_env={"THRIFTGATE_RESPONSES_STORE_CONVERSATIONS": "false"},
    )
    try:
        _, key = server.new_tenant()
        c = client(server, key)
        secret = "my card number is 4111 1111 1111 1111"
        first = c.responses.create(model=MODEL, input=secret, extra_headers=NO_CACHE)
        with pytest.raises(openai.BadRequestError) as caught:
            c.responses.create(
                model=MODEL, input="again", previous_response_id=first.id, extra_headers=NO_CACHE
            )
        assert caught.value.code == "previous_response_not_found"
        assert "does not keep conversations" in caught.value.message
        with pytest.raises(openai.NotFoundError) as missing:
            c.responses.retrieve(first.id)
        assert "does not keep responses" in missing.value.message
        # an output item is still there to reference
        ref = [{"type": "item_reference", "id": first.output[0].id}]
        c.responses.create(model=MODEL, input=[*ref, {"role": "user", "content": "go on"}],
                           extra_headers=NO_CACHE)  # fmt: skip
        stored = wait_for(lambda: sql(fresh_pg_url, "SELECT item FROM response_items"))
        # only the assistant's output items: no record of a response, no user input
        items = [json.loads(row["item"]) for row in stored]
        assert items and {(i["type"], i.get("role")) for i in items} == {("message", "assistant")}
    finally:
        server.stop()
