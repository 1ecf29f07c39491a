"""Prompt compression end to end: the openai SDK -> gateway -> mock upstream -> Postgres ledger."""

from __future__ import annotations

import json
import random
import uuid
from decimal import Decimal

import openai
import pytest

from tests.support.servers import GatewayServer, sql, wait_for
from tests.unit.compression.conftest import filler_passage

pytestmark = pytest.mark.integration

PRICE_IN = Decimal("0.15")  # mock-mini, the gpt-4o-mini group's default deployment
GOLD = "The lighthouse keeper Margarethe Voss repainted the lantern room in 1911."
QUESTION = "Who repainted the lantern room of the lighthouse?"


def client(gateway: GatewayServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key=key, max_retries=0, timeout=60)


def ledger_row(gateway: GatewayServer, request_id: str) -> dict:
    rows = wait_for(
        lambda: sql(gateway.db_url, "SELECT * FROM usage_ledger WHERE request_id = $1", request_id),
        timeout_s=10,
    )
    assert rows and len(rows) == 1
    return dict(rows[0])


def rag_messages(seed: int) -> list[dict]:
    rng = random.Random(seed)
    docs = [filler_passage(rng, 10) for _ in range(14)]
    docs.insert(7, GOLD + " " + filler_passage(rng, 3))
    return [
        {"role": "system", "content": "Answer from the documents only."},
        {"role": "user", "content": "\n\n".join(docs)},
        {"role": "user", "content": QUESTION},
    ]


def test_balanced_header_compresses_and_the_ledger_records_it(gateway, mock_upstream):
    _, key = gateway.new_tenant()
    messages = rag_messages(1)
    raw = client(gateway, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=messages,
        extra_headers={
            "x-request-id": "req-compress-balanced",
            "x-thriftgate-compress": "balanced",
        },
    )
    resp = raw.parse()
    method, counts = raw.headers["x-thriftgate-compression"].split(" ")
    before, after = (int(x) for x in counts.split("->"))
    assert method == "balanced" and after * 2 < before
    sent = mock_upstream.received()[-1]["body"]["messages"]
    assert sent[0] == messages[0] and sent[-1] == messages[-1]  # never touched
    assert GOLD in sent[1]["content"]
    assert len(sent[1]["content"]) * 2 < len(messages[1]["content"])
    assert resp.choices[0].message.content == f"Echo: {QUESTION}"

    row = ledger_row(gateway, "req-compress-balanced")
    assert row["compression_method"] == "balanced"
    assert row["prompt_tokens_original"] == before
    assert row["prompt_tokens"] == resp.usage.prompt_tokens  # what the upstream billed
    removed = round((before - after) * resp.usage.prompt_tokens / after)  # upstream tokens
    saved = Decimal(removed) * PRICE_IN / Decimal(1_000_000)
    assert row["saved_compression_usd"] == saved
    assert row["counterfactual_cost_usd"] == row["cost_usd"] + saved
    assert Decimal(raw.headers["x-thriftgate-saved-usd"]) >= saved


def test_tenant_flag_lossless_minifies_tool_json_in_a_stream(gateway, mock_upstream):
    _, key = gateway.new_tenant(flags={"compression": "lossless"})
    rows = [{"id": i, "city": f"Town {i}", "note": "two  spaces"} for i in range(120)]
    messages = [
        {"role": "user", "content": "List the towns."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "towns", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"rows": rows}, indent=4)},
        {"role": "user", "content": "How many towns are there?"},
    ]
    with client(gateway, key).chat.completions.with_streaming_response.create(
        model="gpt-4o-mini",
        messages=messages,
        stream=True,
        extra_headers={"x-request-id": "req-compress-lossless"},
    ) as raw:
        assert raw.headers["x-thriftgate-compression"].startswith("lossless ")
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "Echo: How many towns are there?"
    sent = mock_upstream.received()[-1]["body"]["messages"]
    assert json.loads(sent[2]["content"]) == {"rows": rows}  # still valid, same value
    assert "\n" not in sent[2]["content"]
    assert sent[1]["tool_calls"] == messages[1]["tool_calls"]
    row = ledger_row(gateway, "req-compress-lossless")
    assert row["compression_method"] == "lossless"
    assert row["prompt_tokens_original"] > row["prompt_tokens"] > 0


def test_off_header_wins_over_the_tenant_flag_and_short_prompts_pass(gateway, mock_upstream):
    _, key = gateway.new_tenant(flags={"compression": "balanced"})
    messages = rag_messages(2)
    raw = client(gateway, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=messages,
        extra_headers={"x-thriftgate-compress": "off"},
    )
    assert "x-thriftgate-compression" not in raw.headers
    assert mock_upstream.received()[-1]["body"]["messages"] == messages
    short = [{"role": "user", "content": "hi   there"}]
    raw = client(gateway, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=short,
        extra_headers={"x-request-id": "req-compress-short"},
    )
    assert "x-thriftgate-compression" not in raw.headers
    assert mock_upstream.received()[-1]["body"]["messages"] == short
    row = ledger_row(gateway, "req-compress-short")
    assert row["compression_method"] is None and row["prompt_tokens_original"] is None


def test_bad_compression_header_is_an_openai_style_400(gateway):
    _, key = gateway.new_tenant()
    with pytest.raises(openai.BadRequestError) as info:
        client(gateway, key).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-thriftgate-compress": "extreme"},
        )
    err = info.value.body
    assert err["code"] == "invalid_compression_mode"
    assert err["param"] == "x-thriftgate-compress"
    # the same verdict when the cache could answer, and on the legacy endpoint
    messages = [{"role": "user", "content": f"cache me {uuid.uuid4().hex}"}]
    client(gateway, key).chat.completions.create(model="gpt-4o-mini", messages=messages)
    for bad in ({"x-thriftgate-compress": "extreme"}, {"x-thriftgate-compress-ratio": "0.5"}):
        with pytest.raises(openai.BadRequestError):
            client(gateway, key).chat.completions.create(
                model="gpt-4o-mini", messages=messages, extra_headers=bad
            )
        with pytest.raises(openai.BadRequestError):
            client(gateway, key).completions.create(
                model="gpt-4o-mini", prompt="hi", extra_headers=bad
            )
