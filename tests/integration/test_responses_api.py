"""The Responses API (`/v1/responses`), driven by the official openai SDK against real processes.

The gateway translates each request onto its chat pipeline; these tests check what the SDK
sees (text, items, usage, stream events), what the mock upstream received (the chat body),
and what the ledger recorded.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import httpx
import openai
import pytest

from tests.support.servers import GatewayServer, MockUpstreamServer, ledger_row
from tests.support.servers import sdk_client as client

pytestmark = pytest.mark.integration

PRICE_IN = Decimal("0.15")
PRICE_OUT = Decimal("0.60")
MODEL = "gpt-4o-mini"
LOOKUP = {
    "type": "function",
    "name": "lookup",
    "description": "Look something up",
    "parameters": {
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
        "additionalProperties": False,
    },
    "strict": True,
}


def rid() -> str:
    return "req-resp-" + uuid.uuid4().hex[:12]


def cost(prompt: int, completion: int) -> Decimal:
    return (prompt * PRICE_IN + completion * PRICE_OUT) / Decimal(1_000_000)


@pytest.fixture(scope="module")
def tenant(gateway: GatewayServer) -> tuple[str, str]:
    return gateway.new_tenant()


def test_plain_text_answer_usage_headers_and_ledger(gateway, tenant, mock_upstream):
    tid, key = tenant
    request_id = rid()
    raw = client(gateway, key).responses.with_raw_response.create(
        model=MODEL,
        input="Say hello to the world",
        extra_headers={"x-request-id": request_id, "cache-control": "no-store"},
    )
    resp = raw.parse()
    assert resp.object == "response" and resp.id.startswith("resp_")
    assert resp.status == "completed" and resp.error is None
    assert resp.output_text == "Echo: Say hello to the world"
    message = resp.output[0]
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "output_text" and message.content[0].annotations == []
    # mock usage: words + 3 per message -> 5 + 3 = 8 prompt, 6 completion
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (8, 6)
    assert resp.usage.total_tokens == 14
    assert resp.usage.input_tokens_details.cached_tokens == 0
    assert resp.usage.output_tokens_details.reasoning_tokens == 0
    assert resp.store is True and resp.tools == [] and resp.tool_choice == "auto"
    assert raw.headers["x-request-id"] == request_id
    assert raw.headers["x-thriftgate-deployment"] == "mock-mini"
    assert raw.headers["x-thriftgate-cache"] == "bypass"
    assert Decimal(raw.headers["x-thriftgate-cost-usd"]) == cost(8, 6)
    sent = mock_upstream.received()[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"]["messages"] == [{"role": "user", "content": "Say hello to the world"}]
    assert sent["authorization"] == "Bearer sk-mock-provider-secret-0123456789"
    row = ledger_row(gateway, request_id)
    assert row["tenant_id"] == tid and row["endpoint"] == "responses"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (8, 6)
    assert row["cost_usd"] == cost(8, 6) and row["status_code"] == 200
    assert row["usage_source"] == "upstream" and row["stream"] is False


def test_instructions_sampling_and_metadata_are_translated_and_echoed(
    gateway, tenant, mock_upstream
):
    _, key = tenant
    resp = client(gateway, key).responses.create(
        model=MODEL,
        instructions="Be brief.",
        input="What is thriftgate",
        temperature=0.2,
        top_p=0.9,
        max_output_tokens=50,
        user="alice",
        metadata={"team": "search"},
        store=True,  # the SDK's default: accepted (the output items are kept for references)
    )
    sent = mock_upstream.received()[-1]["body"]
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is thriftgate"},
    ]
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"]) == (0.2, 0.9, 50)
    assert sent["user"] == "alice" and sent["metadata"] == {"team": "search"}
    for responses_only in ("input", "instructions", "max_output_tokens", "store"):
        assert responses_only not in sent
    assert resp.instructions == "Be brief." and resp.max_output_tokens == 50
    assert resp.temperature == 0.2 and resp.top_p == 0.9
    assert resp.metadata == {"team": "search"} and resp.user == "alice"
    assert resp.output_text == "Echo: What is thriftgate"


def test_multi_turn_input_list_with_parts(gateway, tenant, mock_upstream):
    _, key = tenant
    resp = client(gateway, key).responses.create(
        model=MODEL,
        input=[
            {"role": "developer", "content": "Answer plainly."},
            {"role": "user", "content": "My name is Ada."},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello Ada.", "annotations": []}],
            },
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is my name"},
                    {"type": "input_image", "image_url": "https://example.com/a.png"},
                ],
            },
        ],
    )
    sent = mock_upstream.received()[-1]["body"]["messages"]
    assert sent == [
        {"role": "developer", "content": "Answer plainly."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is my name"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        },
    ]
    assert resp.output_text == "Echo: What is my name"


def test_stream_with_create_assembles_text_and_final_usage(gateway, tenant, mock_upstream):
    _, key = tenant
    request_id = rid()
    events = list(
        client(gateway, key).responses.create(
            model=MODEL,
            input="stream these five words please",
            stream=True,
            extra_headers={"x-request-id": request_id},
        )
    )
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    for kind in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ):
        assert kind in kinds, kind
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Echo: stream these five words please"
    final = events[-1].response
    assert final.output_text == text and final.status == "completed"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (8, 6)
    # the gateway asked the upstream for usage although the client could not
    assert mock_upstream.received()[-1]["body"]["stream_options"] == {"include_usage": True}
    row = ledger_row(gateway, request_id)
    assert row["endpoint"] == "responses" and row["stream"] is True
    assert (row["prompt_tokens"], row["completion_tokens"]) == (8, 6)
    assert row["cost_usd"] == cost(8, 6)


def test_logprobs_come_back_per_token_streamed_or_not(gateway, tenant, mock_upstream):
    """`include: ["message.output_text.logprobs"]` and `top_logprobs` (the Vercel AI SDK's
    `providerOptions.openai.logprobs`) were a 400; chat's logprobs are translated onto the
    output_text part, its deltas and its done events."""
    _, key = tenant
    c = client(gateway, key)
    ask = {"include": ["message.output_text.logprobs"], "top_logprobs": 2}
    reply = c.responses.create(model=MODEL, input="four words of text", **ask)
    sent = mock_upstream.received()[-1]["body"]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2
    part = reply.output[0].content[0]
    assert "".join(lp.token for lp in part.logprobs) == part.text == "Echo: four words of text"
    assert all(len(lp.top_logprobs) == 2 and lp.logprob < 0 for lp in part.logprobs)
    events = list(c.responses.create(model=MODEL, input="five words of text", stream=True, **ask))
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert all(len(e.logprobs) == 1 and e.logprobs[0].token == e.delta for e in deltas)
    done = next(e for e in events if e.type == "response.output_text.done")
    final = events[-1].response.output[0].content[0]
    assert [lp.token for lp in done.logprobs] == [lp.token for lp in final.logprobs]
    # the events' entries are the SDK's event shape (no `bytes`); the part's keep them
    for lp in [*deltas[0].logprobs, *done.logprobs]:
        assert not lp.model_extra and not lp.top_logprobs[0].model_extra
    assert final.logprobs[0].bytes
    assert "".join(lp.token for lp in final.logprobs) == "Echo: five words of text"
    plain = c.responses.create(model=MODEL, input="no logprobs asked")
    assert plain.output[0].content[0].logprobs == []
    assert "logprobs" not in mock_upstream.received()[-1]["body"]


def test_stream_helper_get_final_response(gateway, tenant):
    _, key = tenant
    deltas: list[str] = []
    with client(gateway, key).responses.stream(
        model=MODEL, input="use the stream helper", instructions="Be brief."
    ) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert "".join(deltas) == "Echo: use the stream helper"
    assert final.output_text == "Echo: use the stream helper"
    # (1 system + 3) + (4 user words + 3) = 12 prompt tokens; 5 completion
    assert (final.usage.input_tokens, final.usage.output_tokens) == (12, 5)


def test_tool_call_round_trip(gateway, tenant, mock_upstream):
    _, key = tenant
    c = client(gateway, key)
    first = c.responses.create(
        model=MODEL, input="find the weather", tools=[LOOKUP], tool_choice="auto"
    )
    sent = mock_upstream.received()[-1]["body"]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look something up",
                "parameters": LOOKUP["parameters"],
                "strict": True,
            },
        }
    ]
    assert sent["tool_choice"] == "auto"
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "lookup"
    assert calls[0].call_id == "call_mock_1" and calls[0].status == "completed"
    assert json.loads(calls[0].arguments) == {"query": "find the weather"}
    assert first.output_text == "" and first.tools[0].name == "lookup"
    # round trip: the earlier output plus the function's result go back as input items
    second = c.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": "find the weather"},
            *[item.model_dump(exclude_none=True) for item in first.output],
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"},
        ],
        tools=[LOOKUP],
    )
    messages = mock_upstream.received()[-1]["body"]["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_mock_1",
                "type": "function",
                "function": {"name": "lookup", "arguments": calls[0].arguments},
            }
        ],
    }
    assert messages[2] == {"role": "tool", "tool_call_id": "call_mock_1", "content": "sunny"}
    assert second.output_text == "The tool said: sunny"


def test_streamed_tool_call_events(gateway, tenant):
    _, key = tenant
    with client(gateway, key).responses.stream(
        model=MODEL, input="q", tools=[LOOKUP], tool_choice={"type": "function", "name": "lookup"}
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and done[0].name == "lookup"
    assert json.loads(done[0].arguments) == {"query": "q"}
    (call,) = final.output
    assert call.type == "function_call" and call.call_id == "call_mock_1"
    assert call.parsed_arguments == {"query": "q"}  # the SDK parses strict tools' arguments


def test_json_schema_format_passes_through(gateway, tenant, mock_upstream):
    _, key = tenant
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    mock_upstream.control(reply='{"answer": "42"}')
    resp = client(gateway, key).responses.create(
        model=MODEL,
        input="What is the answer",
        text={
            "format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}
        },
    )
    sent = mock_upstream.received()[-1]["body"]
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": True},
    }
    assert "text" not in sent
    assert json.loads(resp.output_text) == {"answer": "42"}
    assert resp.text.format.type == "json_schema" and resp.text.format.name == "answer"


def test_max_output_tokens_cut_is_incomplete(gateway, tenant, mock_upstream):
    _, key = tenant
    mock_upstream.control(honor_max_tokens=True)
    resp = client(gateway, key).responses.create(
        model=MODEL,
        input="a question that gets a long echo back",
        max_output_tokens=3,
        extra_headers={"cache-control": "no-store"},
    )
    assert resp.status == "incomplete"
    assert resp.incomplete_details.reason == "max_output_tokens"
    assert resp.output_text == "Echo: a question" and resp.output[0].status == "incomplete"
    assert resp.usage.output_tokens == 3
    events = list(
        client(gateway, key).responses.create(
            model=MODEL,
            input="a question that gets a long echo back",
            max_output_tokens=3,
            stream=True,
            extra_headers={"cache-control": "no-store"},
        )
    )
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"


def test_repeated_identical_request_is_a_cache_hit(gateway):
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    question = "Explain caching in one line " + uuid.uuid4().hex[:6]
    first = c.responses.with_raw_response.create(model=MODEL, input=question, temperature=0)
    second_id = rid()
    second = c.responses.with_raw_response.create(
        model=MODEL, input=question, temperature=0, extra_headers={"x-request-id": second_id}
    )
    assert first.headers["x-thriftgate-cache"] == "miss"
    assert second.headers["x-thriftgate-cache"] == "hit-exact"
    assert second.parse().output_text == first.parse().output_text
    assert second.parse().id != first.parse().id
    assert Decimal(second.headers["x-thriftgate-cost-usd"]) == 0
    row = ledger_row(gateway, second_id)
    assert row["cache_status"] == "hit-exact" and row["endpoint"] == "responses"
    assert row["cost_usd"] == 0 and row["saved_cache_usd"] > 0
    streamed = c.responses.create(model=MODEL, input=question, temperature=0, stream=True)
    events = list(streamed)
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == first.parse().output_text
    assert events[-1].response.usage.output_tokens > 0


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"conversation": "conv_123"}, "conversation"),
        ({"background": True}, "background"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0].type"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    ],
)
def test_unsupported_parameters_get_a_clear_400(gateway, tenant, extra, param):
    _, key = tenant
    with pytest.raises(openai.BadRequestError) as exc:
        client(gateway, key).responses.create(model=MODEL, input="hi", **extra)
    err = exc.value.body
    assert exc.value.status_code == 400
    assert err["type"] == "invalid_request_error" and err["code"] == "unsupported_parameter"
    assert err["param"] == param and param.split("[")[0] in err["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL}, "input"),
        ({"input": "hi"}, "model"),
        ({"model": MODEL, "input": [{"role": "wizard", "content": "x"}]}, "input[0].role"),
        ({"model": MODEL, "input": [{"type": "bogus"}]}, "input[0].type"),
        ({"model": MODEL, "input": [42]}, "input[0]"),
        ({"model": MODEL, "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": MODEL, "input": "x", "tool_choice": {"type": "web_search"}}, "tool_choice"),
        ({"model": MODEL, "input": "x", "text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"model": MODEL, "input": "x", "temperature": "hot"}, "temperature"),
        ({"model": MODEL, "input": "x", "instructions": ["a"]}, "instructions"),
        ({"model": MODEL, "input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ],
)
def test_invalid_shapes_get_a_clear_400(gateway, tenant, body, param):
    _, key = tenant
    r = httpx.post(
        gateway.url + "/responses", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["message"] and err["type"] == "invalid_request_error"


def test_stored_response_endpoints_answer_404(gateway, tenant):
    _, key = tenant
    c = client(gateway, key)
    with pytest.raises(openai.NotFoundError) as exc:
        c.responses.retrieve("resp_abc")
    assert exc.value.code == "response_not_found" and "not found" in exc.value.message
    with pytest.raises(openai.NotFoundError):
        c.responses.delete("resp_abc")
    with pytest.raises(openai.NotFoundError):
        c.responses.cancel("resp_abc")
    r = httpx.get(gateway.url + "/responses/resp_abc")  # no key: auth still comes first
    assert r.status_code == 401


def test_upstream_failure_mid_stream_ends_with_response_failed(gateway, tenant, mock_upstream):
    _, key = tenant
    request_id = rid()
    mock_upstream.control(truncate_stream=True, reply="one two three four five six seven eight")
    events = list(
        client(gateway, key).responses.create(
            model=MODEL,
            input="break this stream",
            stream=True,
            extra_headers={"x-request-id": request_id, "cache-control": "no-store"},
        )
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.failed"
    assert "error" in kinds
    failed = events[-1].response
    assert failed.status == "failed" and failed.error.code == "server_error"
    assert "sk-mock-provider" not in failed.error.message
    row = ledger_row(gateway, request_id)
    assert row["status_code"] >= 500 and row["endpoint"] == "responses"


def test_client_leaving_mid_stream_is_accounted(gateway, tenant, mock_upstream):
    _, key = tenant
    request_id = rid()
    mock_upstream.control(ms_per_token=200, reply=" ".join(["word"] * 40))
    body = {"model": MODEL, "input": "leave early", "stream": True}
    headers = {
        "Authorization": f"Bearer {key}",
        "x-request-id": request_id,
        "cache-control": "no-store",
    }
    with httpx.stream("POST", gateway.url + "/responses", json=body, headers=headers) as r:
        for line in r.iter_lines():
            if line == "event: response.output_text.delta":
                break  # one delta seen; hang up
    row = ledger_row(gateway, request_id)
    assert row["status_code"] == 499 and row["endpoint"] == "responses"
    assert row["completion_tokens"] > 0


def test_upstream_failure_before_stream_is_a_502(gateway, tenant, mock_upstream):
    _, key = tenant
    mock_upstream.control(fail_next=1, fail_status=500)
    with pytest.raises(openai.APIStatusError) as exc:
        client(gateway, key).responses.create(model=MODEL, input="fail please", stream=True)
    assert exc.value.status_code == 502 and "mock failure 500" in exc.value.message


@pytest.mark.parametrize(
    ("upstream_param", "param"),
    [("messages", "input"), ("max_tokens", "max_output_tokens"), ("temperature", "temperature")],
)
def test_an_upstream_refusal_names_the_responses_parameter(
    gateway, tenant, mock_upstream, upstream_param, param
):
    """The request was translated to chat; the client sent `input` and `max_output_tokens`."""
    _, key = tenant
    mock_upstream.control(
        fail_next=1, fail_status=400, fail_code="context_length_exceeded", fail_param=upstream_param
    )
    try:
        with pytest.raises(openai.BadRequestError) as exc:
            client(gateway, key).responses.create(
                model=MODEL, input="too long", extra_headers={"cache-control": "no-store"}
            )
    finally:
        mock_upstream.control(fail_code=None, fail_param=None, fail_status=503)
    assert exc.value.code == "context_length_exceeded" and exc.value.param == param


def test_fast_lane_off_serves_the_same(session_tmp, pg_url, mock_upstream: MockUpstreamServer):
    from tests.support.servers import mock_deployment

    gw = GatewayServer(
        session_tmp,
        pg_url,
        [mock_deployment("mock-mini", MODEL, mock_upstream)],
        extra_env={"THRIFTGATE_FAST_LANE": "false"},
    )
    try:
        _, key = gw.new_tenant()
        c = client(gw, key)
        assert c.responses.create(model=MODEL, input="slow lane").output_text == "Echo: slow lane"
        events = list(c.responses.create(model=MODEL, input="slow lane stream", stream=True))
        assert events[-1].response.output_text == "Echo: slow lane stream"
        schema = httpx.get(gw.base + "/openapi.json").json()
        assert "post" in schema["paths"]["/v1/responses"]
    finally:
        gw.stop()
