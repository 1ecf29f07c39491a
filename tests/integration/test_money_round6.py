"""What a request costs and saves, as the client and the ledger see it (hardening round 6).

A real gateway, the mock upstream, a tiny quirky upstream of our own (streams whose usage comes
in odd places, an Anthropic /v1/messages that reports prompt-cache writes) and the official
openai SDK.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    free_port,
    ledger_row,
    mock_deployment,
    sdk_client,
)

pytestmark = pytest.mark.integration


# -- a quirky upstream: its behaviour is picked by the request's model ----------------------


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    body = {
        "id": "chatcmpl-q",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


# OpenAI's audio models: audio tokens are parts of the prompt and completion counts
AUDIO_USAGE = {
    "prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 800},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 400},
}  # fmt: skip


async def _chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    model = body["model"]
    if model == "audio":
        message = {"role": "assistant", "content": None,
                   "audio": {"id": "audio_1", "data": "UklGRg==", "expires_at": 1,
                             "transcript": "hello"}}  # fmt: skip
        return web.json_response({
            "id": "chatcmpl-a", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": AUDIO_USAGE,
        })  # fmt: skip
    words = ["Hello", " there", " friend"]
    usage = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for i, w in enumerate(words):
        extra: dict[str, Any] = {}
        if model == "every-usage":  # a running total on every chunk
            extra["usage"] = {"prompt_tokens": 11, "completion_tokens": i + 1,
                              "total_tokens": 12 + i}  # fmt: skip
        await resp.write(_chunk(model, {"content": w}, **extra))
    if model == "cut":  # the connection drops before the finish
        return resp
    extra = {"usage": usage} if model in ("finish-usage", "every-usage") else {}
    await resp.write(_chunk(model, {}, "stop", **extra))
    await resp.write(b"data: [DONE]\n\n")
    return resp


ANTHROPIC_USAGE = {
    "input_tokens": 100,
    "output_tokens": 20,
    "cache_creation_input_tokens": 1000,
    "cache_read_input_tokens": 2000,
}

# Anthropic's split of the written tokens when a request marks something for the 1-hour cache
HOUR_USAGE = {
    **ANTHROPIC_USAGE,
    "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 600},
}


async def _messages(request: web.Request) -> web.Response:
    body = await request.json()
    usage = HOUR_USAGE if '"ttl": "1h"' in json.dumps(body) else ANTHROPIC_USAGE
    return web.json_response(
        {
            "id": "msg_q",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": "Hello from claude"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
    )


class QuirkyUpstream:
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
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        started.set()
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def quirky(name: str, q: QuirkyUpstream) -> dict[str, Any]:
    return {
        "name": f"q-{name}",
        "model": f"q-{name}",
        "provider": "openai_compatible",
        "upstream_model": name,
        "api_base": q.url + "/v1",
        "api_key_env": "MOCK_PROVIDER_KEY",
        "input_cost_per_mtok": 1,
        "output_cost_per_mtok": 2,
    }


@pytest.fixture(scope="module")
def quirks() -> Iterator[QuirkyUpstream]:
    q = QuirkyUpstream()
    yield q
    q.stop()


@pytest.fixture(scope="module")
def gw(
    session_tmp: Path, pg_url: str, mock_upstream: MockUpstreamServer, quirks: QuirkyUpstream
) -> Iterator[GatewayServer]:
    deps = [
        mock_deployment("m-cheap", "m", mock_upstream, input_cost_per_mtok=0.1,
                        output_cost_per_mtok=0.4),
        mock_deployment("m-exp", "m", mock_upstream, input_cost_per_mtok=1.0,
                        output_cost_per_mtok=3.0, default=True),
        mock_deployment("x-only", "x", mock_upstream, input_cost_per_mtok=2.0,
                        output_cost_per_mtok=8.0),
        # priced by its hardware: the configured token price is 0
        mock_deployment("h-local", "h", mock_upstream, input_cost_per_mtok=None,
                        output_cost_per_mtok=None, hardware_usd_per_hour=36, ms_per_token=10),
        mock_deployment("slow", "slow", mock_upstream, timeout_s=1),
        # nothing listens there: the request never leaves the gateway
        {**mock_deployment("gone", "gone", mock_upstream), "api_base": f"http://127.0.0.1:{free_port()}/v1"},
        *(quirky(n, quirks) for n in ("no-usage", "finish-usage", "every-usage", "cut")),
        {**quirky("audio", quirks), "input_cost_per_mtok": 0.15, "output_cost_per_mtok": 0.6,
         "audio_input_cost_per_mtok": 10, "audio_output_cost_per_mtok": 20},
        {
            "name": "claude",
            "model": "claude",
            "provider": "anthropic",
            "upstream_model": "claude-haiku-4-5",
            "api_base": quirks.url,
            "api_key_env": "MOCK_PROVIDER_KEY",
        },
    ]  # fmt: skip
    for d in deps:  # leave prices unset where asked (hardware-priced, litellm-priced)
        for k in ("input_cost_per_mtok", "output_cost_per_mtok"):
            if d.get(k, 0) is None:
                del d[k]
    server = GatewayServer(session_tmp, pg_url, deps, file_config={"auto": {"models": ["m", "x"]}})
    yield server
    server.stop()


def rid(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def ask(c: openai.OpenAI, model: str, text: str, request_id: str) -> Any:
    return c.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": text}],
        temperature=0,
        extra_headers={"x-request-id": request_id},
    )


def d(value: Any) -> Decimal:
    return Decimal(str(value))


# -- H3-3 / H3-5: what a cache hit saved ------------------------------------------------------


def test_a_cache_hit_on_a_hardware_priced_deployment_saves_what_the_miss_cost(
    gw: GatewayServer,
) -> None:
    _, key = gw.new_tenant()
    c = sdk_client(gw, key)
    text = f"cache this hardware answer please {uuid.uuid4().hex[:6]}"
    miss_id, hit_id = rid("hw-miss"), rid("hw-hit")
    ask(c, "h", text, miss_id)
    hit = ask(c, "h", text, hit_id)
    assert hit.headers["x-thriftgate-cache"] == "hit-exact"
    miss_row, hit_row = ledger_row(gw, miss_id), ledger_row(gw, hit_id)
    assert d(miss_row["cost_usd"]) > 0
    assert d(hit_row["cost_usd"]) == 0
    # The load-dependent price can move between the two requests, but never to zero.
    assert d(hit_row["counterfactual_cost_usd"]) > 0
    assert d(hit_row["saved_cache_usd"]) == d(hit_row["counterfactual_cost_usd"])
    assert d(hit.headers["x-thriftgate-saved-usd"]) == d(hit_row["saved_cache_usd"])


def test_an_auto_cache_hit_claims_the_counterfactual_of_the_miss_that_stored_it(
    gw: GatewayServer,
) -> None:
    _, key = gw.new_tenant()
    c = sdk_client(gw, key)
    text = f"auto cache me please alpha beta gamma {uuid.uuid4().hex[:6]}"
    miss_id, hit_id = rid("auto-miss"), rid("auto-hit")
    ask(c, "thriftgate/auto", text, miss_id)
    hit = ask(c, "thriftgate/auto", text, hit_id)
    assert hit.headers["x-thriftgate-cache"] == "hit-exact"
    miss_row, hit_row = ledger_row(gw, miss_id), ledger_row(gw, hit_id)
    assert (hit_row["prompt_tokens"], hit_row["completion_tokens"]) == (
        miss_row["prompt_tokens"],
        miss_row["completion_tokens"],
    )
    # both against the baseline the router uses for auto: the first listed model's default
    assert d(hit_row["counterfactual_cost_usd"]) == d(miss_row["counterfactual_cost_usd"]) > 0


# -- H1-F4: the gateway's own timeout after the prompt went upstream ------------------------


def test_a_timeout_waiting_for_the_answer_bills_the_prompt_the_upstream_was_sent(
    gw: GatewayServer, mock_upstream: MockUpstreamServer
) -> None:
    _, key = gw.new_tenant()
    c = sdk_client(gw, key)
    mock_upstream.control(hang_s=3)
    request_id = rid("timeout")
    with pytest.raises(openai.APIStatusError) as err:
        ask(c, "slow", "a prompt the upstream read before it went quiet", request_id)
    assert err.value.status_code == 504
    row = ledger_row(gw, request_id)
    assert (row["status_code"], row["error_code"]) == (504, "upstream_timeout")
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] == 0
    assert row["usage_source"] == "tiktoken"
    assert d(row["cost_usd"]) == d(row["prompt_tokens"]) * Decimal("0.15") / 1_000_000


def test_an_upstream_that_could_not_be_reached_bills_nothing(gw: GatewayServer) -> None:
    _, key = gw.new_tenant()
    c = sdk_client(gw, key)
    request_id = rid("unreachable")
    with pytest.raises(openai.APIStatusError) as err:
        ask(c, "gone", "a prompt that never left the gateway", request_id)
    assert err.value.status_code == 502
    row = ledger_row(gw, request_id)
    assert row["prompt_tokens"] == 0 and d(row["cost_usd"]) == 0


# -- H1-F5: Anthropic prompt-cache writes ---------------------------------------------------


def test_anthropic_cache_writes_are_billed_at_the_cache_write_price(gw: GatewayServer) -> None:
    _, key = gw.new_tenant(flags={"cache": False})
    c = sdk_client(gw, key)
    request_id = rid("claude")
    raw = ask(c, "claude", "a long system prompt worth caching", request_id)
    row = ledger_row(gw, request_id)
    # claude-haiku-4-5 in litellm's map: $1 in, $1.25 cache write, $0.10 cache read, $5 out
    expected = (100 * Decimal("1") + 1000 * Decimal("1.25") + 2000 * Decimal("0.1")
                + 20 * Decimal("5")) / 1_000_000  # fmt: skip
    assert d(row["cost_usd"]) == expected == Decimal("0.00165")
    assert d(raw.headers["x-thriftgate-cost-usd"]) == expected
    # the prompt is counted once: fresh, written and read tokens together
    assert (row["prompt_tokens"], row["cached_tokens"]) == (3100, 2000)


def test_anthropic_one_hour_cache_writes_are_billed_at_their_own_price(gw: GatewayServer) -> None:
    _, key = gw.new_tenant(flags={"cache": False})
    c = sdk_client(gw, key)
    request_id = rid("claude-1h")
    hour = {"type": "ephemeral", "ttl": "1h"}
    raw = c.chat.completions.with_raw_response.create(
        model="claude",
        messages=[
            {"role": "system",
             "content": [{"type": "text", "text": "a long prompt", "cache_control": hour}]},
            {"role": "user", "content": "hello"},
        ],
        extra_headers={"x-request-id": request_id},
    )  # fmt: skip
    row = ledger_row(gw, request_id)
    # of the 1000 written: 400 to the 5-minute cache at $1.25, 600 to the 1-hour one at $2
    expected = (100 * Decimal("1") + 400 * Decimal("1.25") + 600 * Decimal("2")
                + 2000 * Decimal("0.1") + 20 * Decimal("5")) / 1_000_000  # fmt: skip
    assert d(row["cost_usd"]) == expected == Decimal("0.0021")
    assert d(raw.headers["x-thriftgate-cost-usd"]) == expected


def test_audio_tokens_are_billed_at_the_audio_prices(gw: GatewayServer) -> None:
    _, key = gw.new_tenant(flags={"cache": False})
    c = sdk_client(gw, key)
    request_id = rid("audio")
    raw = c.chat.completions.with_raw_response.create(
        model="q-audio",
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "wav"},
        messages=[{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]}],
        extra_headers={"x-request-id": request_id},
    )  # fmt: skip
    row = ledger_row(gw, request_id)
    # 200 text + 800 audio prompt tokens, 100 text + 400 audio answer tokens
    expected = (200 * Decimal("0.15") + 800 * Decimal(10) + 100 * Decimal("0.6")
                + 400 * Decimal(20)) / 1_000_000  # fmt: skip
    assert d(row["cost_usd"]) == expected == Decimal("0.01609")
    assert d(raw.headers["x-thriftgate-cost-usd"]) == expected
    assert raw.parse().choices[0].message.audio.transcript == "hello"


# -- H3-9/10, H1-F9: a stream asking for usage always ends with one priced usage chunk ------


def stream_chunks(
    c: openai.OpenAI, model: str, request_id: str
) -> tuple[list[Any], Exception | None]:
    stream = c.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "say hello"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-request-id": request_id, "cache-control": "no-store"},
    )
    chunks: list[Any] = []
    try:
        for chunk in stream:
            chunks.append(chunk)
    except openai.APIError as exc:
        return chunks, exc
    return chunks, None


def priced_chunks(chunks: list[Any]) -> list[Any]:
    return [ch for ch in chunks if (ch.model_extra or {}).get("x_thriftgate")]


@pytest.mark.parametrize("model", ["q-no-usage", "q-finish-usage", "q-every-usage"])
def test_a_stream_asking_for_usage_gets_its_cost_once_in_the_closing_usage_chunk(
    gw: GatewayServer, model: str
) -> None:
    _, key = gw.new_tenant()
    request_id = rid(model)
    chunks, error = stream_chunks(sdk_client(gw, key), model, request_id)
    assert error is None
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == (
        "Hello there friend"
    )
    row = ledger_row(gw, request_id)
    last = chunks[-1]
    assert priced_chunks(chunks) == [last] and last.choices == []
    assert [ch for ch in chunks if ch.usage] == [last]  # usage once, as OpenAI sends it
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (
        row["prompt_tokens"],
        row["completion_tokens"],
    )
    assert d(last.model_extra["x_thriftgate"]["cost_usd"]) == d(row["cost_usd"]) > 0
    if model != "q-no-usage":
        assert (row["prompt_tokens"], row["completion_tokens"]) == (11, 3)


def test_a_stream_cut_short_still_says_what_it_cost(gw: GatewayServer) -> None:
    _, key = gw.new_tenant()
    request_id = rid("cut")
    chunks, error = stream_chunks(sdk_client(gw, key), "q-cut", request_id)
    assert error is not None  # the in-band error event
    row = ledger_row(gw, request_id)
    assert row["status_code"] == 502
    priced = priced_chunks(chunks)
    assert priced == [chunks[-1]] and priced[0].usage is not None
    assert d(priced[0].model_extra["x_thriftgate"]["cost_usd"]) == d(row["cost_usd"]) > 0
