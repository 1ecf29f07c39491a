"""Upstreams that answer in ways the OpenAI spec does not promise, behind a real gateway process,
driven by the official openai SDK: a 404 from a deployment (its model or api_base is wrong), an
upstream that rejects `stream_options`, upstream 429s (with Retry-After, or out of quota) and
error bodies in Mistral's shape.

The quirky upstream is a small threaded HTTP server here; its behaviour is picked by the
request's `model` (each deployment's upstream_model).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.servers import GatewayServer, create_database, drop_database, ledger_row

pytestmark = pytest.mark.integration

KEY = "sk-quirks-provider-secret-0123456789"
MISTRAL_DETAIL = [
    {"type": "extra_forbidden", "loc": ["body", "foo"], "msg": "Extra inputs are not permitted"}
]


def answer(model: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": "fine, thanks"}
    return {
        "id": "chatcmpl-q",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


def stream_events(model: str, usage: bool) -> bytes:
    def chunk(choices: list[Any], **extra: Any) -> bytes:
        body = {"id": "c", "object": "chat.completion.chunk", "model": model, "choices": choices}
        return b"data: " + json.dumps({**body, **extra}).encode() + b"\n\n"

    out = chunk([{"index": 0, "delta": {"content": "fine"}, "finish_reason": None}])
    out += chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    if usage:
        out += chunk([], usage={"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6})
    return out + b"data: [DONE]\n\n"


class Quirky(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []  # noqa: RUF012  (shared by the handler threads)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        Quirky.received.append(body)
        model = body.get("model", "")
        if model == "not-found":
            err = {"message": f"The model `{model}` does not exist.", "code": "model_not_found"}
            return self.reply(404, {"error": {**err, "type": "invalid_request_error"}})
        if model == "rate-limited":
            err = {
                "message": "Rate limit reached",
                "type": "requests",
                "code": "rate_limit_exceeded",
            }
            return self.reply(429, {"error": err}, {"Retry-After": "7"})
        if model == "no-quota":
            err = {"message": "You exceeded your current quota.", "code": "insufficient_quota"}
            return self.reply(429, {"error": {**err, "type": "insufficient_quota"}})
        if model == "mistral":
            body = {"object": "Error", "message": MISTRAL_DETAIL, "code": 3001}
            return self.reply(422, {**body, "type": "invalid_request_error"})
        if model == "old-azure" and "stream_options" in body:
            err = {
                "message": "Unknown parameter: 'stream_options'.",
                "type": "invalid_request_error",
                "param": "stream_options",
                "code": "unknown_parameter",
            }
            return self.reply(400, {"error": err})
        if not body.get("stream"):
            return self.reply(200, answer(model))
        raw = stream_events(model, usage="stream_options" in body)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def reply(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.db = create_database("tg_quirks")
        self.upstream = ThreadingHTTPServer(("127.0.0.1", 0), Quirky)
        threading.Thread(target=self.upstream.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{self.upstream.server_address[1]}/v1"

        def dep(name: str, model: str, upstream_model: str, cost: float = 0.1) -> dict[str, Any]:
            return {
                "name": name,
                "model": model,
                "provider": "openai_compatible",
                "upstream_model": upstream_model,
                "api_base": base,
                "api_key_env": "QUIRKS_PROVIDER_KEY",
                "input_cost_per_mtok": cost,
                "output_cost_per_mtok": cost * 4,
            }

        deps = [
            dep("nf-a", "nf-fb", "not-found", 0.1),
            dep("nf-b", "nf-fb", "ok", 1.0),
            dep("nf-solo", "nf-solo", "not-found"),
            dep("rl-a", "rl-fb", "rate-limited", 0.1),
            dep("rl-b", "rl-fb", "ok", 1.0),
            dep("rl-solo", "rl-solo", "rate-limited"),
            dep("quota-solo", "quota-solo", "no-quota"),
            dep("mistral", "mistral", "mistral"),
            dep("old-azure", "old-azure", "old-azure"),
        ]
        self.gw = GatewayServer(tmp, self.db, deps, extra_env={"QUIRKS_PROVIDER_KEY": KEY})
        _, key = self.gw.new_tenant()
        self.client = openai.OpenAI(
            base_url=self.gw.url,
            api_key=key,
            max_retries=0,
            timeout=30,
            default_headers={"Cache-Control": "no-cache, no-store"},
        )

    def close(self) -> None:
        self.client.close()
        self.gw.stop()
        self.upstream.shutdown()
        drop_database(self.db)

    def row(self, request_id: str) -> Any:
        return ledger_row(self.gw, request_id)


@pytest.fixture(scope="module")
def rig(session_tmp: Path) -> Iterator[Rig]:
    tmp = session_tmp / "upstream-quirks"
    tmp.mkdir(exist_ok=True)
    r = Rig(tmp)
    yield r
    r.close()


def msgs() -> Any:
    return [{"role": "user", "content": f"hello {uuid.uuid4().hex}"}]


def rid() -> str:
    return "req-quirk-" + uuid.uuid4().hex


# -- F3: a 404 is the deployment's fault ------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_a_deployment_answering_404_falls_back_to_the_next(rig: Rig, stream: bool) -> None:
    raw = rig.client.chat.completions.with_raw_response.create(
        model="nf-fb", messages=msgs(), stream=stream
    )
    assert raw.headers["x-thriftgate-deployment"] == "nf-b"
    assert raw.headers["x-thriftgate-route-reason"] == "fallback-after-404"
    if stream:
        assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)


def test_a_404_from_every_deployment_is_a_502_naming_it(rig: Rig) -> None:
    r = rid()
    with pytest.raises(openai.APIStatusError) as info:
        rig.client.chat.completions.create(
            model="nf-solo", messages=msgs(), extra_headers={"x-request-id": r}
        )
    assert info.value.status_code == 502
    message = info.value.body["message"]  # type: ignore[index]
    assert "nf-solo" in message and "404" in message
    assert KEY not in str(info.value.body)
    assert rig.row(r)["status_code"] == 502


# -- F2: an upstream that rejects stream_options ----------------------------------------------


def old_azure_requests() -> list[dict[str, Any]]:
    return [b for b in Quirky.received if b.get("model") == "old-azure"]


def test_a_stream_to_an_upstream_rejecting_stream_options_is_retried_without_it(rig: Rig) -> None:
    before = len(old_azure_requests())
    for _ in range(2):
        r = rid()
        stream = rig.client.chat.completions.create(
            model="old-azure", messages=msgs(), stream=True, extra_headers={"x-request-id": r}
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "fine"
        row = rig.row(r)
        assert row["status_code"] == 200 and row["completion_tokens"] > 0
    sent = old_azure_requests()[before:]
    # the first stream learnt it: one refused attempt, then none sends stream_options
    assert ["stream_options" in b for b in sent] == [True, False, False]


def test_the_clients_own_include_usage_is_dropped_on_the_retry_and_still_answered(
    rig: Rig,
) -> None:
    # the gateway ends such a stream with its own priced usage chunk whatever the upstream sends
    stream = rig.client.chat.completions.create(
        model="old-azure",
        messages=msgs(),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "fine"
    assert len([c for c in chunks if c.usage is not None]) == 1


def test_other_stream_options_the_client_sent_are_not_dropped(rig: Rig) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        rig.client.chat.completions.create(
            model="old-azure",
            messages=msgs(),
            stream=True,
            stream_options={"include_usage": True, "continuous_usage_stats": True},
        )
    assert "stream_options" in info.value.body["message"]  # type: ignore[index]


# -- F7: upstream 429s ------------------------------------------------------------------------


def test_a_429_falls_back_to_the_next_deployment(rig: Rig) -> None:
    raw = rig.client.chat.completions.with_raw_response.create(model="rl-fb", messages=msgs())
    assert raw.headers["x-thriftgate-deployment"] == "rl-b"
    assert raw.headers["x-thriftgate-route-reason"] == "fallback-after-429"


def test_a_429_from_the_last_deployment_is_a_429_with_its_retry_after(rig: Rig) -> None:
    r = rid()
    with pytest.raises(openai.RateLimitError) as info:
        rig.client.chat.completions.create(
            model="rl-solo", messages=msgs(), extra_headers={"x-request-id": r}
        )
    assert info.value.response.headers["retry-after"] == "7"
    body = info.value.body
    assert (body["type"], body["code"]) == ("rate_limit_error", "rate_limit_exceeded")  # type: ignore[index]
    assert "rl-solo" in body["message"]  # type: ignore[index]
    assert rig.row(r)["status_code"] == 429


def test_an_upstream_out_of_quota_is_a_502_the_sdk_does_not_retry(rig: Rig) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        rig.client.chat.completions.create(model="quota-solo", messages=msgs())
    assert info.value.status_code == 502
    assert info.value.response.headers["x-should-retry"] == "false"
    message = info.value.body["message"]  # type: ignore[index]
    assert "quota-solo" in message and "out of quota" in message
    assert info.value.body["code"] == "upstream_quota_exhausted"  # type: ignore[index]


# -- F8: error bodies in Mistral's shape ------------------------------------------------------


def test_a_mistral_validation_error_keeps_its_message_and_code(rig: Rig) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        rig.client.chat.completions.create(model="mistral", messages=msgs())
    body = info.value.body
    assert body["message"].endswith("body.foo: Extra inputs are not permitted")  # type: ignore[index]
    assert body["code"] == "3001"  # type: ignore[index]
