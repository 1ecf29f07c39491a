"""Web searches are billed apiece, as the providers invoice them: OpenAI's search models
($35 per 1,000 at the medium context size for gpt-4o-search-preview, $30 low, $50 high),
Anthropic's web search tool ($10 per 1,000), Perplexity's request fee ($5-12 per 1,000 by
context size). litellm's map lists them (`search_context_cost_per_query`); a deployment may
configure one (`web_search_usd_per_query`). A gpt-4o-search-preview answer of 120 tokens was
billed $0.0006 where OpenAI bills $0.0356 (hunt11 h111)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.support.servers import (
    GatewayServer,
    create_database,
    drop_database,
    free_port,
    ledger_row,
    sdk_client,
)

pytestmark = pytest.mark.integration

MILLION = Decimal(1_000_000)
USAGE = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}


async def _chat(request: web.Request) -> web.Response:
    """An OpenAI search model's answer cites the web; Perplexity's usage says its context
    size and searches."""
    body = await request.json()
    message: dict[str, Any] = {"role": "assistant", "content": "It is sunny in Paris."}
    usage: dict[str, Any] = dict(USAGE)
    if "search" in body["model"]:
        message["annotations"] = [{"type": "url_citation", "url_citation": {
            "url": "https://example.com/weather", "title": "Weather", "start_index": 0,
            "end_index": 5}}]  # fmt: skip
    if "sonar" in body["model"]:
        usage |= {"search_context_size": "high", "num_search_queries": 1}
    if "deep-research" in body["model"]:  # 3 searches, sources read, reasoning
        usage |= {"search_context_size": "low", "num_search_queries": 3, "citation_tokens": 500,
                  "reasoning_tokens": 10}  # fmt: skip
    if "deepseek" in body["model"]:  # DeepSeek's own API: cache hits at the top level
        usage |= {"prompt_cache_hit_tokens": 80, "prompt_cache_miss_tokens": 20}
    if "qwen" in body["model"]:  # thinking mode
        usage["completion_tokens_details"] = {"reasoning_tokens": 15}
    if body.get("stream"):
        return await _stream(request, body["model"], message, usage)
    return web.json_response({
        "id": "chatcmpl-s", "object": "chat.completion", "created": 1, "model": body["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": usage,
    })  # fmt: skip


async def _stream(
    request: web.Request, model: str, message: dict[str, Any], usage: dict[str, Any]
) -> web.StreamResponse:
    """The answer as OpenAI streams it: its annotations in a delta, usage in the last chunk."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    base = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": model}
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": message["content"]}]
    if "annotations" in message:
        deltas.append({"annotations": message["annotations"]})
    for delta in deltas:
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    await resp.write(b"data: " + json.dumps(last).encode() + b"\n\n")
    await resp.write(b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode()
                     + b"\n\n")  # fmt: skip
    await resp.write(b"data: [DONE]\n\n")
    return resp


async def _messages(request: web.Request) -> web.Response:
    """Anthropic's answer: after two searches when it has its web search tool."""
    body = await request.json()
    usage: dict[str, Any] = {"input_tokens": 100, "output_tokens": 20}
    if body.get("tools"):
        usage["server_tool_use"] = {"web_search_requests": 2}
    if "claude-long" in json.dumps(body):  # a long prompt, mostly read from the cache
        usage = {"input_tokens": 50_000, "output_tokens": 1_000, "cache_read_input_tokens": 150_000,
                 "cache_creation_input_tokens": 1_000}  # fmt: skip
    if body.get("stream"):
        return await _anthropic_stream(request, body["model"], usage)
    return web.json_response({
        "id": "msg_s", "type": "message", "role": "assistant", "model": body["model"],
        "content": [{"type": "text", "text": "It is sunny in Paris."}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": usage,
    })  # fmt: skip


async def _anthropic_stream(
    request: web.Request, model: str, usage: dict[str, Any]
) -> web.StreamResponse:
    """Anthropic's stream: the searches are counted in message_delta's usage."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    start = {"id": "msg_s", "type": "message", "role": "assistant", "model": model,
             "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1}}  # fmt: skip
    final = {k: v for k, v in usage.items() if k != "input_tokens"}
    events = [
        ("message_start", {"type": "message_start", "message": start}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "It is sunny."}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "usage": final,
                           "delta": {"stop_reason": "end_turn", "stop_sequence": None}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    for name, data in events:
        await resp.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
    return resp


async def _gemini(request: web.Request) -> web.Response:
    """Gemini's generateContent: a 250,000-token prompt, 50,000 of it from its cache; an
    image model's answer: one image (1,290 tokens) and a line of text."""
    if "image" in request.match_info["model"]:
        picture = {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
        return web.json_response({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "Here it is."},
                                                                    picture]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 1300,
                              "totalTokenCount": 1320, "candidatesTokensDetails": [
                                  {"modality": "IMAGE", "tokenCount": 1290},
                                  {"modality": "TEXT", "tokenCount": 10}]},
            "modelVersion": request.match_info["model"],
        })  # fmt: skip
    return web.json_response({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Summarised."}]},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 250_000, "candidatesTokenCount": 100,
                          "cachedContentTokenCount": 50_000, "totalTokenCount": 250_100},
        "modelVersion": request.match_info["model"],
    })  # fmt: skip


class SearchUpstream:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", _chat)
        app.router.add_post("/v1/messages", _messages)
        app.router.add_post("/v1beta/models/{model}:generateContent", _gemini)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        started.set()
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def dep(name: str, upstream_model: str, base: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "model": name, "provider": "openai_compatible",
            "upstream_model": upstream_model, "api_base": base, "api_key_env":
            "MOCK_PROVIDER_KEY", **extra}  # fmt: skip


@pytest.fixture(scope="module")
def gw(session_tmp: Path) -> Iterator[GatewayServer]:
    up = SearchUpstream()
    db = create_database("tg_search")
    deps = [
        # priced from litellm's map: $2.5 / $10 per 1M, $0.03 / 0.035 / 0.05 a search
        dep("searcher", "gpt-4o-search-preview", up.url + "/v1"),
        # Perplexity's sonar: $1 / $1, a request fee of $0.005 / 0.008 / 0.012
        dep("sonar", "perplexity/sonar", up.url + "/v1"),
        dep("deepseek", "deepseek/deepseek-v3.2", up.url + "/v1"),
        dep("qwen", "dashscope/qwen-plus-2025-07-14", up.url + "/v1"),
        dep("research", "perplexity/sonar-deep-research", up.url + "/v1"),
        # priced in the config
        dep("own", "my-search-model", up.url + "/v1", input_cost_per_mtok=1,
            output_cost_per_mtok=2, web_search_usd_per_query="0.02"),
        {"name": "gemini", "model": "gemini", "provider": "gemini",
         "upstream_model": "gemini-2.5-pro", "api_base": up.url + "/v1beta",
         "api_key_env": "MOCK_PROVIDER_KEY"},
        {"name": "banana", "model": "banana", "provider": "gemini",
         "upstream_model": "gemini-2.5-flash-image", "api_base": up.url + "/v1beta",
         "api_key_env": "MOCK_PROVIDER_KEY"},
        {"name": "claude", "model": "claude", "provider": "anthropic",
         "upstream_model": "claude-sonnet-4-5", "api_base": up.url,
         "api_key_env": "MOCK_PROVIDER_KEY"},
    ]  # fmt: skip
    g = GatewayServer(session_tmp, db, deps)
    yield g
    g.stop()
    drop_database(db)
    up.stop()


def ask(gw: GatewayServer, model: str, rid: str, **extra: Any) -> Any:
    _, key = gw.new_tenant()
    return sdk_client(gw, key).chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": f"What is the weather in Paris? {rid}"}],
        extra_headers={"x-request-id": rid, "Cache-Control": "no-store"},
        **extra,
    )


def tokens(row: dict[str, Any], inp: str | int, out: str | int) -> Decimal:
    return (row["prompt_tokens"] * Decimal(inp) + row["completion_tokens"] * Decimal(out)) / MILLION


@pytest.mark.parametrize(("size", "each"), [(None, "0.035"), ("low", "0.03"), ("high", "0.05")])
def test_an_openai_search_model_s_search_is_billed_at_its_context_size(
    gw: GatewayServer, size: str | None, each: str
) -> None:
    rid = f"search-openai-{size}"
    extra = {} if size is None else {"web_search_options": {"search_context_size": size}}
    raw = ask(gw, "searcher", rid, **extra)
    assert raw.parse().choices[0].message.annotations[0].type == "url_citation"
    row = ledger_row(gw, rid)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (100, 20)
    expected = tokens(row, "2.5", 10) + Decimal(each)
    assert row["cost_usd"] == expected
    assert Decimal(raw.headers["x-thriftgate-cost-usd"]) == expected
    assert row["counterfactual_cost_usd"] == expected


def test_a_streamed_search_answer_pays_its_search(gw: GatewayServer) -> None:
    _, key = gw.new_tenant()
    rid = "search-openai-stream"
    stream = sdk_client(gw, key).chat.completions.create(
        model="searcher", messages=[{"role": "user", "content": "weather in Paris, streamed"}],
        stream=True, stream_options={"include_usage": True},
        extra_headers={"x-request-id": rid, "Cache-Control": "no-store"},
    )  # fmt: skip
    chunks = list(stream)
    assert any(c.choices and c.choices[0].delta.model_extra.get("annotations") for c in chunks)
    row = ledger_row(gw, rid)
    assert row["cost_usd"] == tokens(row, "2.5", 10) + Decimal("0.035")


def test_anthropic_s_web_search_tool_is_billed_per_search(gw: GatewayServer) -> None:
    rid = "search-claude"
    tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    ask(gw, "claude", rid, tools=[tool])
    row = ledger_row(gw, rid)
    # claude-sonnet-4-5: $3 / $15 per 1M tokens, $10 per 1,000 searches: two of them
    assert row["cost_usd"] == tokens(row, 3, 15) + 2 * Decimal("0.01")


def test_anthropic_s_streamed_searches_are_billed(gw: GatewayServer) -> None:
    _, key = gw.new_tenant()
    rid = "search-claude-stream"
    tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    list(sdk_client(gw, key).chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "weather in Paris, streamed"}],
        tools=[tool], stream=True,  # type: ignore[list-item]
        extra_headers={"x-request-id": rid, "Cache-Control": "no-store"},
    ))  # fmt: skip
    row = ledger_row(gw, rid)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (100, 20)
    assert row["cost_usd"] == tokens(row, 3, 15) + 2 * Decimal("0.01")


def test_perplexity_s_request_fee_is_billed_at_the_context_size_it_used(
    gw: GatewayServer,
) -> None:
    rid = "search-sonar"
    ask(gw, "sonar", rid)
    row = ledger_row(gw, rid)
    assert row["cost_usd"] == tokens(row, 1, 1) + Decimal("0.012")  # "high", as it says


def test_a_configured_search_price_is_billed(gw: GatewayServer) -> None:
    rid = "search-own"
    ask(gw, "own", rid, web_search_options={})
    row = ledger_row(gw, rid)
    assert row["cost_usd"] == tokens(row, 1, 2) + Decimal("0.02")


def test_an_answer_without_a_search_pays_none(gw: GatewayServer) -> None:
    """The search price is for searches: a plain answer of a model that has one pays tokens."""
    rid = "search-none"
    ask(gw, "claude", rid)
    row = ledger_row(gw, rid)
    assert row["cost_usd"] == tokens(row, 3, 15)


# -- other per-unit prices of litellm's map ---------------------------------------------------


def test_deepseek_cache_hits_are_billed_at_its_cache_hit_price(gw: GatewayServer) -> None:
    """deepseek-v3.2 lists its cache-hit price ($0.028 per 1M, a tenth) only as
    input_cost_per_token_cache_hit: 80 of 100 prompt tokens read from DeepSeek's cache were
    billed at the full $0.28."""
    rid = "keys-deepseek"
    ask(gw, "deepseek", rid)
    row = ledger_row(gw, rid)
    assert (row["prompt_tokens"], row["cached_tokens"]) == (100, 80)
    expected = (20 * Decimal("0.28") + 80 * Decimal("0.028") + 20 * Decimal("0.4")) / MILLION
    assert row["cost_usd"] == expected


def test_reasoning_tokens_are_billed_at_their_own_price(gw: GatewayServer) -> None:
    """Qwen Plus in thinking mode: $4 per 1M reasoning tokens where its answers are $1.20; the
    15 reasoning tokens of a 20-token completion were billed at $1.20."""
    rid = "keys-qwen"
    ask(gw, "qwen", rid)
    row = ledger_row(gw, rid)
    expected = (100 * Decimal("0.4") + 5 * Decimal("1.2") + 15 * Decimal(4)) / MILLION
    assert row["cost_usd"] == expected


def test_perplexity_deep_research_bills_citations_reasoning_and_searches(
    gw: GatewayServer,
) -> None:
    """sonar-deep-research: $2 per 1M citation tokens (beside the prompt), reasoning at $3
    (not the answer's $8) and $5 per 1,000 searches: billed as 120 plain tokens."""
    rid = "keys-research"
    ask(gw, "research", rid)
    row = ledger_row(gw, rid)
    tokens_usd = (100 * 2 + 500 * 2 + 10 * 8 + 10 * 3) / MILLION
    assert row["cost_usd"] == tokens_usd + 3 * Decimal("0.005")


def test_anthropic_s_long_context_threshold_counts_cache_reads_and_writes(
    gw: GatewayServer,
) -> None:
    """Anthropic prices a request above 200k input tokens at its long-context rates, counting
    the tokens read from and written to its cache: 50,000 fresh + 150,000 read + 1,000
    written is above, though no part of it is."""
    rid = "keys-claude-long"
    ask(gw, "claude", rid)
    row = ledger_row(gw, rid)
    assert (row["prompt_tokens"], row["cached_tokens"]) == (201_000, 150_000)
    # claude-sonnet-4-5 above 200k: $6 in, $0.60 cache read, $7.50 cache write, $22.50 out
    expected = (50_000 * 6 + 150_000 * Decimal("0.6") + 1_000 * Decimal("7.5")
                + 1_000 * Decimal("22.5")) / MILLION  # fmt: skip
    assert row["cost_usd"] == expected


def test_a_cache_hit_of_a_searched_answer_saved_its_search_too(gw: GatewayServer) -> None:
    """The hit avoided the search model's call, its $0.035 search included; it claimed the
    tokens alone ($0.00045)."""
    _, key = gw.new_tenant()
    client = sdk_client(gw, key)
    messages = [{"role": "user", "content": "Who won the match last night?"}]
    for rid in ("keys-hit-miss", "keys-hit-hit"):
        client.chat.completions.create(
            model="searcher", messages=messages, extra_headers={"x-request-id": rid}
        )  # type: ignore[call-overload]
    miss, hit = ledger_row(gw, "keys-hit-miss"), ledger_row(gw, "keys-hit-hit")
    assert hit["cache_status"] == "hit-exact"
    assert miss["cost_usd"] == tokens(miss, "2.5", 10) + Decimal("0.035")
    assert hit["saved_cache_usd"] == hit["counterfactual_cost_usd"] == miss["cost_usd"]


def test_gemini_s_long_context_price_through_litellm(gw: GatewayServer) -> None:
    """Gemini 2.5 Pro through litellm's translation: 250,000 prompt tokens (50,000 read from
    its cache) are above 200k: $2.50 / $0.25 cached / $15 per 1M (billed at $1.25 / $0.125 /
    $10 before)."""
    rid = "keys-gemini-long"
    ask(gw, "gemini", rid)
    row = ledger_row(gw, rid)
    assert (row["prompt_tokens"], row["cached_tokens"], row["completion_tokens"]) == (
        250_000, 50_000, 100,
    )  # fmt: skip
    expected = (200_000 * Decimal("2.5") + 50_000 * Decimal("0.25") + 100 * 15) / MILLION
    assert row["cost_usd"] == expected


def test_an_image_answer_is_billed_at_the_image_output_price(gw: GatewayServer) -> None:
    """Gemini 2.5 Flash Image: $30 per 1M image tokens out ($0.039 an image), $2.50 text. An
    answer with one image was billed $0.00325 as text where Google bills $0.0387."""
    rid = "keys-banana"
    ask(gw, "banana", rid, modalities=["image", "text"])
    row = ledger_row(gw, rid)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (20, 1300)
    expected = (20 * Decimal("0.3") + 10 * Decimal("2.5") + 1290 * 30) / MILLION
    assert row["cost_usd"] == expected
