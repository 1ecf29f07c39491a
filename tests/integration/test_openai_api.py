"""The OpenAI-compatible surface, driven by the official openai SDK against real processes."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import openai
import pytest

from tests.support.servers import GatewayServer, ledger_row, sql, wait_for
from tests.support.servers import sdk_client as client

pytestmark = pytest.mark.integration

PRICE_IN = Decimal("0.15")
PRICE_OUT = Decimal("0.60")


@pytest.fixture(scope="module")
def tenant(gateway: GatewayServer) -> tuple[str, str]:
    return gateway.new_tenant()


def test_chat_non_streaming_records_upstream_usage_and_cost(gateway, tenant, mock_upstream):
    tid, key = tenant
    raw = client(gateway, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello to the world"},
        ],
        extra_headers={"x-request-id": "req-nonstream-1"},
    )
    resp = raw.parse()
    assert resp.choices[0].message.content == "Echo: Say hello to the world"
    assert raw.headers["x-request-id"] == "req-nonstream-1"
    assert raw.headers["x-thriftgate-deployment"] == "mock-mini"
    # mock usage: words + 3 per message -> (2+3) + (5+3) = 13 prompt, 6 completion
    assert resp.usage.prompt_tokens == 13 and resp.usage.completion_tokens == 6
    expected = (13 * PRICE_IN + 6 * PRICE_OUT) / Decimal(1_000_000)
    assert Decimal(raw.headers["x-thriftgate-cost-usd"]) == expected
    row = ledger_row(gateway, "req-nonstream-1")
    assert row["tenant_id"] == tid
    assert (row["prompt_tokens"], row["completion_tokens"]) == (13, 6)
    assert row["cost_usd"] == expected
    assert row["counterfactual_cost_usd"] == expected
    assert row["deployment"] == "mock-mini" and row["status_code"] == 200
    assert row["usage_source"] == "upstream"
    # The upstream received our provider key and the upstream model name, not the tenant key.
    seen = mock_upstream.received()[-1]
    assert seen["authorization"] == "Bearer sk-mock-provider-secret-0123456789"
    assert seen["body"]["model"] == "mock-model"


def test_streaming_with_usage_passes_usage_through(gateway, tenant):
    _, key = tenant
    stream = client(gateway, key).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "stream these five words please"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-request-id": "req-stream-usage"},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: stream these five words please"
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0].prompt_tokens == 8 and usage[0].completion_tokens == 6
    row = ledger_row(gateway, "req-stream-usage")
    assert row["stream"] is True and (row["prompt_tokens"], row["completion_tokens"]) == (8, 6)
    assert row["ttft_ms"] is not None and row["ttft_ms"] <= row["latency_ms"]
    # A stream's headers go out before its cost is known: the usage chunk carries it instead.
    priced = chunks[-1].model_extra["x_thriftgate"]
    assert Decimal(priced["cost_usd"]) == row["cost_usd"] > 0
    assert Decimal(priced["saved_usd"]) == row["counterfactual_cost_usd"] - row["cost_usd"]


def test_streams_closed_at_the_finish_chunk_each_get_their_ledger_row(gateway, tenant):
    """The SDK's usual loop breaks at `finish_reason` and closes the connection before [DONE]:
    the request is still settled once, not cancelled half way through (the cache stores the
    answer first, and the client's disconnect used to land there)."""
    _, key = tenant
    c = client(gateway, key)
    ids = [f"req-break-{i}" for i in range(30)]
    for i, rid in enumerate(ids):
        with c.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"break after the finish chunk {i}"}],
            stream=True,
            extra_headers={"x-request-id": rid},
        ) as stream:
            for chunk in stream:
                if chunk.choices and chunk.choices[0].finish_reason:
                    break
    rows = wait_for(
        lambda: (
            r
            if len(r := sql(gateway.db_url, "SELECT request_id, status_code FROM usage_ledger "
                            "WHERE request_id = ANY($1::text[])", ids)) == len(ids)
            else None
        ),
        10,
    )  # fmt: skip
    assert rows is not None, "some streams have no ledger row"
    assert {r["status_code"] for r in rows} == {200}


def test_stream_ttft_is_the_first_token_not_a_role_only_opening_chunk(
    gateway, tenant, mock_upstream
):
    """Providers may flush `{"role": "assistant"}` before the model has produced anything:
    the ledger's TTFT (and the SLO verdict and the router's learning) waits for output."""
    _, key = tenant
    mock_upstream.control(first_token_ms=400)
    try:
        chunks = list(
            client(gateway, key).chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "a slow first token"}],
                stream=True,
                extra_headers={"x-request-id": "req-role-first", "cache-control": "no-store"},
            )
        )
    finally:
        mock_upstream.control(first_token_ms=0)
    assert chunks[0].choices[0].delta.role == "assistant" and not chunks[0].choices[0].delta.content
    row = ledger_row(gateway, "req-role-first")
    assert row["ttft_ms"] is not None and 380 <= row["ttft_ms"] <= row["latency_ms"]


def test_streaming_without_usage_asks_upstream_and_strips_it(gateway, tenant, mock_upstream):
    _, key = tenant
    chunks = list(
        client(gateway, key).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "no usage for me"}],
            stream=True,
            extra_headers={"x-request-id": "req-stream-nousage"},
        )
    )
    assert all(c.usage is None for c in chunks)
    sent = mock_upstream.received()[-1]["body"]
    assert sent["stream_options"] == {"include_usage": True}
    row = ledger_row(gateway, "req-stream-nousage")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (7, 5)
    assert row["usage_source"] == "upstream"


def test_missing_upstream_usage_falls_back_to_tiktoken(gateway, tenant, mock_upstream):
    _, key = tenant
    mock_upstream.control(no_usage=True)
    out = client(gateway, key).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "count me with tiktoken"}],
        extra_headers={"x-request-id": "req-tiktoken"},
    )
    row = ledger_row(gateway, "req-tiktoken")
    assert row["usage_source"] == "tiktoken"
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert row["cost_usd"] > 0
    # The answer says what was billed (it said "usage": null), as a stream's usage chunk does.
    assert out.usage is not None
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (
        row["prompt_tokens"],
        row["completion_tokens"],
    )


def test_embeddings_without_upstream_usage_say_what_was_billed(gateway, tenant, mock_upstream):
    _, key = tenant
    mock_upstream.control(no_usage=True)
    out = client(gateway, key).embeddings.with_raw_response.create(
        model="text-embedding-3-small",
        input=["count me", "with tiktoken"],
        extra_headers={"x-request-id": "req-embed-nousage"},
    )
    row = ledger_row(gateway, "req-embed-nousage")
    assert row["usage_source"] == "tiktoken" and row["prompt_tokens"] > 0
    usage = out.parse().usage  # it was None: the SDK's r.usage.prompt_tokens raised
    assert usage is not None
    assert (usage.prompt_tokens, usage.total_tokens) == (row["prompt_tokens"],) * 2
    assert "completion_tokens" not in out.http_response.json()["usage"]  # as OpenAI's


def test_tools_round_trip_and_passthrough_fields(gateway, tenant, mock_upstream):
    _, key = tenant
    c = client(gateway, key)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look something up",
                "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
            },
        }
    ]
    first = c.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "find the weather"}],
        tools=tools,
        tool_choice="auto",
        seed=7,
        user="alice",
        stop=["\n\n"],
        response_format={"type": "text"},
        n=1,
        extra_body={"vendor_extension": {"keep": True}},
    )
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {"query": "find the weather"}
    sent = mock_upstream.received()[-1]["body"]
    for field in (
        "tools",
        "tool_choice",
        "seed",
        "user",
        "stop",
        "response_format",
        "n",
        "vendor_extension",
    ):
        assert field in sent, field
    second = c.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "user", "content": "find the weather"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
        tools=tools,
    )
    assert second.choices[0].message.content == "The tool said: sunny"


def test_streamed_tool_calls_reassemble(gateway, tenant):
    _, key = tenant
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    chunks = list(
        client(gateway, key).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "q"}],
            tools=tools,
            stream=True,
        )
    )
    args = "".join(
        tc.function.arguments or ""
        for c in chunks
        if c.choices
        for tc in (c.choices[0].delta.tool_calls or [])
    )
    assert json.loads(args) == {"query": "q"}


def test_legacy_completions_and_embeddings(gateway, tenant):
    _, key = tenant
    c = client(gateway, key)
    comp = c.completions.create(model="gpt-4o-mini", prompt="complete this text", max_tokens=5)
    assert comp.choices[0].text == "Echo: complete this text"
    streamed = "".join(
        x.choices[0].text
        for x in c.completions.create(model="gpt-4o-mini", prompt="one two", stream=True)
        if x.choices
    )
    assert streamed.strip() == "Echo: one two"
    for prompt in ([1734, 420, 1495], [[1734, 420], [1495]], ["two", "prompts"]):
        # every prompt form the SDK types allow (str, tokens, token arrays, strings)
        assert c.completions.create(model="gpt-4o-mini", prompt=prompt, max_tokens=5).choices
    emb = c.embeddings.with_raw_response.create(
        model="text-embedding-3-small",
        input=["alpha beta", "gamma"],
        extra_headers={"x-request-id": "req-embed"},
    )
    parsed = emb.parse()
    assert len(parsed.data) == 2 and len(parsed.data[0].embedding) == 8
    row = ledger_row(gateway, "req-embed")
    assert row["endpoint"] == "embeddings" and row["prompt_tokens"] == 3
    assert row["cost_usd"] == Decimal(3) * Decimal("0.02") / Decimal(1_000_000)


def test_models_lists_only_what_the_tenant_may_use(gateway):
    _, key_all = gateway.new_tenant()
    _, key_one = gateway.new_tenant(flags={"models": ["gpt-4o-mini"]})
    all_ids = {m.id for m in client(gateway, key_all).models.list()}
    assert {"gpt-4o-mini", "text-embedding-3-small"} <= all_ids
    assert {m.id for m in client(gateway, key_one).models.list()} == {"gpt-4o-mini"}
    with pytest.raises(openai.NotFoundError) as exc:
        client(gateway, key_one).embeddings.create(model="text-embedding-3-small", input="x")
    assert exc.value.code == "model_not_found"


def test_health_and_metrics(gateway, tenant):
    _, key = tenant
    client(gateway, key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "metric me"}]
    )
    assert httpx.get(gateway.base + "/healthz").json() == {"status": "ok"}
    text = httpx.get(gateway.base + "/metrics").text
    assert "thriftgate_requests_total{" in text
    assert 'deployment="mock-mini"' in text
    assert "thriftgate_request_latency_seconds_bucket" in text
    assert "thriftgate_cost_usd_total" in text


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "nope", "messages": [{"role": "user", "content": "x"}]}, 404, "model_not_found"),
        ({"messages": [{"role": "user", "content": "x"}]}, 400, "missing_model"),
        ({"model": "gpt-4o-mini", "messages": []}, 400, "invalid_value"),
        (
            {"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]},
            400,
            "invalid_value",
        ),
        (
            {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "x"}],
                "max_tokens": 10**12,
            },
            400,
            "invalid_value",
        ),
        (
            {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "x"}],
                "temperature": "hot",
            },
            400,
            "invalid_value",
        ),
    ],
)
def test_invalid_requests_get_openai_errors(gateway, tenant, body, status, code):
    _, key = tenant
    r = httpx.post(
        gateway.url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == status
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and err["type"]


def test_malformed_json_and_oversized_body(gateway, tenant):
    _, key = tenant
    h = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    r = httpx.post(gateway.url + "/chat/completions", content=b"{not json", headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(gateway.url + "/chat/completions", content=b"\xff\xfe{}", headers=h)
    assert r.status_code == 400
    big = b'{"model": "gpt-4o-mini", "x": "' + b"a" * (5 * 1024 * 1024) + b'"}'
    r = httpx.post(gateway.url + "/chat/completions", content=big, headers=h)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunked() -> object:  # no Content-Length: the limit is enforced while reading
        yield big[: len(big) // 2]
        yield big[len(big) // 2 :]

    r = httpx.post(gateway.url + "/chat/completions", content=chunked(), headers=h)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert r.headers["x-request-id"]


def test_auth_errors(gateway, tenant):
    with pytest.raises(openai.AuthenticationError) as exc:
        client(gateway, "tg-not-a-real-key").models.list()
    assert exc.value.status_code == 401
    r = httpx.get(gateway.url + "/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    # A revoked key stops working at once on this replica.
    tid, key = gateway.new_tenant()
    keys = gateway.admin("GET", f"/admin/tenants/{tid}/keys").json()["data"]
    assert client(gateway, key).models.list()
    assert gateway.admin("DELETE", f"/admin/keys/{keys[0]['id']}").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        client(gateway, key).models.list()


def test_upstream_failure_maps_to_502_with_upstream_message(gateway, tenant, mock_upstream):
    _, key = tenant
    mock_upstream.control(fail_next=1, fail_status=500)
    with pytest.raises(openai.APIStatusError) as exc:
        client(gateway, key).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "fail"}],
            extra_headers={"x-request-id": "req-upstream-500"},
        )
    assert exc.value.status_code == 502
    assert "HTTP 500" in exc.value.message and "mock failure 500" in exc.value.message
    assert "sk-mock-provider" not in exc.value.message
    row = ledger_row(gateway, "req-upstream-500")
    assert row["status_code"] == 502 and row["cost_usd"] == 0


def test_upstream_timeout_maps_to_504(session_tmp, pg_url, mock_upstream):
    from tests.support.servers import mock_deployment

    gw = GatewayServer(
        session_tmp, pg_url, [mock_deployment("slow", "slow-model", mock_upstream, timeout_s=0.5)]
    )
    try:
        _, key = gw.new_tenant()
        mock_upstream.control(hang_s=2)
        with pytest.raises(openai.APIStatusError) as exc:
            client(gw, key).chat.completions.create(
                model="slow-model", messages=[{"role": "user", "content": "x"}]
            )
        assert exc.value.status_code == 504
    finally:
        gw.stop()
