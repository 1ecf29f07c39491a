"""Upstream faults: refused connections, hangs past the deadline, 429/5xx bursts, truncated or
malformed SSE and missing usage. The client (the official openai SDK) gets a clean error or a
fallback answer, and the ledger row says what happened (status_code, error_code, usage_source).
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

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    create_database,
    drop_database,
    free_port,
    mock_deployment,
    sql,
    wait_for,
)

pytestmark = pytest.mark.integration

DEADLINE_S = 1.0


def msgs() -> Any:
    """A fresh prompt each time, so the response cache never answers for the upstream."""
    return [{"role": "user", "content": f"tell me about fault tolerance {uuid.uuid4().hex}"}]


STATUSES = (429, 500, 502, 503)


class _AbsurdUsage(BaseHTTPRequestHandler):
    """An upstream whose usage block is nonsense (more tokens than an INTEGER column holds)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps(
            {
                "id": "chatcmpl-absurd",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "four words of reply"},
                    }
                ],
                "usage": {"prompt_tokens": 2**40, "completion_tokens": -5, "total_tokens": 1},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class Rig:
    """Each test gets its own model group, so one test's breaker trips never touch another's."""

    def __init__(self, tmp: Path) -> None:
        try:
            self._start(tmp)
        except BaseException:
            self.close()  # nothing the failed start already launched may outlive the test
            raise

    def _start(self, tmp: Path) -> None:
        self.db = create_database("tg_faults")
        self.primary = MockUpstreamServer(tmp)
        self.backup = MockUpstreamServer(tmp)
        # Hung handlers outlive the gateway's deadline; keep them off the other mocks' knobs.
        self.slow = MockUpstreamServer(tmp)
        dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connection refused
        cheap = {"input_cost_per_mtok": 0.1, "output_cost_per_mtok": 0.4, "timeout_s": DEADLINE_S}
        pricey = {"input_cost_per_mtok": 1.0, "output_cost_per_mtok": 4.0, "timeout_s": 5}

        def solo(model: str) -> list[dict[str, Any]]:
            return [mock_deployment(model, model, self.primary, **cheap)]

        def pair(model: str, first_dead: bool = False) -> list[dict[str, Any]]:
            first = mock_deployment(model + "-a", model, self.primary, **cheap)
            if first_dead:
                first["api_base"] = dead
            return [first, mock_deployment(model + "-b", model, self.backup, **pricey)]

        deps = [{**solo("refused")[0], "api_base": dead}]
        deps += pair("refused-fb-False", True) + pair("refused-fb-True", True)
        deps += [mock_deployment(f"hang-{s}", f"hang-{s}", self.slow, **cheap) for s in (0, 1)]
        deps += [mock_deployment("stall", "stall", self.slow, **cheap)]
        for status in STATUSES:
            deps += solo(f"burst-{status}") + pair(f"burst-fb-{status}")
        deps += solo("broken-truncate_stream") + solo("broken-malformed_stream")
        deps += solo("nousage-False") + solo("nousage-True") + solo("odd-200") + solo("nodone")
        deps += solo("big-event")
        deps += pair("odd-200-fb") + solo("rejected") + pair("late")
        # the first deployment's timeout_s is the group's largest: it spends the whole deadline
        spent = pair("spent")
        spent[1]["timeout_s"] = DEADLINE_S / 2
        deps += spent
        deps += solo("denied") + pair("denied-fb-401") + pair("denied-fb-403")
        saver = pair("rejected-saver")  # the pricey one is the baseline: routing saves
        saver[1]["default"] = True
        deps += saver
        self.absurd = ThreadingHTTPServer(("127.0.0.1", 0), _AbsurdUsage)
        threading.Thread(target=self.absurd.serve_forever, daemon=True).start()
        deps += [
            {
                **solo("absurd")[0],
                "api_base": f"http://127.0.0.1:{self.absurd.server_address[1]}/v1",
            }
        ]
        self.gw = GatewayServer(tmp, self.db, deps)
        self.tenant_id, key = self.gw.new_tenant()
        # The response cache must not answer for the upstream here: every request goes out.
        self.client = openai.OpenAI(
            base_url=self.gw.url,
            api_key=key,
            max_retries=0,
            timeout=30,
            default_headers={"Cache-Control": "no-cache, no-store"},
        )

    def reset(self) -> None:
        self.primary.reset()
        self.backup.reset()
        self.slow.reset()

    def close(self) -> None:
        if hasattr(self, "client"):
            self.client.close()
        for name in ("gw", "primary", "backup", "slow"):
            if hasattr(self, name):
                getattr(self, name).stop()
        if hasattr(self, "absurd"):
            self.absurd.shutdown()
        if hasattr(self, "db"):
            drop_database(self.db)

    def row(self, request_id: str) -> Any:
        rows = wait_for(
            lambda: sql(self.db, "SELECT * FROM usage_ledger WHERE request_id = $1", request_id),
            10,
        )
        assert len(rows) == 1, f"expected one ledger row for {request_id}, got {rows}"
        return rows[0]


@pytest.fixture(scope="module")
def rig(session_tmp: Path) -> Iterator[Rig]:
    tmp = session_tmp / "faults-upstream"
    tmp.mkdir(exist_ok=True)
    r = Rig(tmp)
    yield r
    r.close()


@pytest.fixture(autouse=True)
def _reset(rig: Rig) -> Iterator[None]:
    rig.reset()
    yield
    rig.reset()


def rid() -> str:
    return "req-fault-" + uuid.uuid4().hex


def test_connection_refused_is_clean_502(rig: Rig) -> None:
    r = rid()
    with pytest.raises(openai.APIStatusError) as info:
        rig.client.chat.completions.create(
            model="refused", messages=msgs(), extra_headers={"x-request-id": r}
        )
    assert info.value.status_code == 502
    assert info.value.body["code"] == "upstream_error"  # type: ignore[index]
    assert "sk-mock" not in str(info.value.body)
    row = rig.row(r)
    assert (row["status_code"], row["error_code"], row["deployment"]) == (
        502,
        "upstream_error",
        "refused",
    )
    assert row["cost_usd"] == 0


@pytest.mark.parametrize("stream", [False, True])
def test_connection_refused_falls_back(rig: Rig, stream: bool) -> None:
    r = rid()
    raw = rig.client.chat.completions.with_raw_response.create(
        model=f"refused-fb-{stream}",
        messages=msgs(),
        stream=stream,
        extra_headers={"x-request-id": r},
    )
    assert raw.headers["x-thriftgate-deployment"] == f"refused-fb-{stream}-b"
    assert raw.headers["x-thriftgate-route-reason"].startswith("fallback-after-")
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        text = raw.parse().choices[0].message.content or ""
    assert text.startswith("Echo: tell me")
    row = rig.row(r)
    assert (row["status_code"], row["deployment"], row["usage_source"]) == (
        200,
        f"refused-fb-{stream}-b",
        "upstream",
    )
    assert row["cost_usd"] > 0


@pytest.mark.parametrize("stream", [False, True])
def test_hang_past_deadline_is_504(rig: Rig, stream: bool) -> None:
    rig.slow.control(hang_s=DEADLINE_S * 3)
    r = rid()
    with pytest.raises(openai.APIStatusError) as info:
        out = rig.client.chat.completions.create(
            model=f"hang-{int(stream)}",
            messages=msgs(),
            stream=stream,
            extra_headers={"x-request-id": r},
        )
        list(out)  # type: ignore[call-overload]
    assert info.value.status_code == 504
    assert info.value.body["code"] == "upstream_timeout"  # type: ignore[index]
    row = rig.row(r)
    assert (row["status_code"], row["error_code"]) == (504, "upstream_timeout")
    assert DEADLINE_S * 1000 * 0.9 <= row["latency_ms"] < DEADLINE_S * 1000 * 2.5


@pytest.mark.parametrize("status", STATUSES)
def test_burst_of_errors_without_fallback_is_reported(rig: Rig, status: int) -> None:
    rig.primary.control(fail_next=3, fail_status=status)
    for _ in range(3):
        r = rid()
        with pytest.raises(openai.APIStatusError) as info:
            rig.client.chat.completions.create(
                model=f"burst-{status}", messages=msgs(), extra_headers={"x-request-id": r}
            )
        # the last deployment's 429 goes back as a 429 (the client may retry after it)
        want = (429, "rate_limit_exceeded") if status == 429 else (502, "upstream_error")
        assert info.value.status_code == want[0]
        assert f"HTTP {status}" in info.value.message
        row = rig.row(r)
        assert (row["status_code"], row["error_code"]) == want
    # The burst is over: the next request is served normally.
    out = rig.client.chat.completions.create(model=f"burst-{status}", messages=msgs())
    assert out.choices[0].message.content


@pytest.mark.parametrize("status", STATUSES)
def test_burst_of_errors_with_fallback_is_served(rig: Rig, status: int) -> None:
    """Every request is answered; after 5 straight failures the breaker skips the primary."""
    rig.primary.control(fail_next=8, fail_status=status)
    reasons = []
    for _ in range(8):
        r = rid()
        raw = rig.client.chat.completions.with_raw_response.create(
            model=f"burst-fb-{status}", messages=msgs(), extra_headers={"x-request-id": r}
        )
        assert raw.parse().choices[0].message.content
        assert raw.headers["x-thriftgate-deployment"] == f"burst-fb-{status}-b"
        row = rig.row(r)
        assert (row["status_code"], row["deployment"]) == (200, f"burst-fb-{status}-b")
        reasons.append(row["route_reason"])
    assert reasons[:5] == [f"fallback-after-{status}"] * 5, reasons
    assert f"fallback-after-{status}" not in reasons[5:], reasons  # breaker open: not even tried


@pytest.mark.parametrize("knob", ["truncate_stream", "malformed_stream"])
def test_broken_stream_ends_with_an_error_event(rig: Rig, knob: str) -> None:
    rig.primary.control(**{knob: True}, reply="one two three four five six seven eight")
    r = rid()
    got: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in rig.client.chat.completions.create(
            model=f"broken-{knob}", messages=msgs(), stream=True, extra_headers={"x-request-id": r}
        ):
            if chunk.choices:
                got.append(chunk.choices[0].delta.content or "")
    assert f"Deployment 'broken-{knob}'" in str(info.value)
    assert len(got) >= 1  # some content had gone out before the break
    row = rig.row(r)
    assert (row["status_code"], row["error_code"]) == (502, "upstream_error")
    assert row["completion_tokens"] > 0  # what was generated is still accounted


def test_a_finished_stream_without_done_is_a_success(rig: Rig) -> None:
    """Some servers close after the finish chunk and never send [DONE]; the SDK reads that as a
    normal end. More than the breaker's 5 of them must leave the deployment serving."""
    rig.primary.control(omit_done=True)
    for _ in range(6):
        r = rid()
        out = rig.client.chat.completions.create(
            model="nodone",
            messages=msgs(),
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-request-id": r},
        )
        assert "".join(c.choices[0].delta.content or "" for c in out if c.choices)
        row = rig.row(r)
        assert (row["status_code"], row["error_code"], row["usage_source"]) == (
            200,
            None,
            "upstream",
        )
    out = rig.client.chat.completions.create(model="nodone", messages=msgs())
    assert out.choices[0].message.content


def test_a_stream_event_past_512_kib_passes_through(rig: Rig) -> None:
    """One event can be large (a base64 image or audio delta): aiohttp's line cap is no limit."""
    big = "A" * 700_000
    rig.primary.control(reply=big)
    r = rid()
    out = rig.client.chat.completions.create(
        model="big-event", messages=msgs(), stream=True, extra_headers={"x-request-id": r}
    )
    assert "".join(c.choices[0].delta.content or "" for c in out if c.choices) == big
    assert rig.row(r)["status_code"] == 200


@pytest.mark.parametrize("stream", [False, True])
def test_missing_usage_is_counted_locally(rig: Rig, stream: bool) -> None:
    rig.primary.control(no_usage=True)
    r = rid()
    out = rig.client.chat.completions.create(
        model=f"nousage-{stream}", messages=msgs(), stream=stream, extra_headers={"x-request-id": r}
    )
    if stream:
        assert "".join(c.choices[0].delta.content or "" for c in out if c.choices)  # type: ignore[union-attr]
    else:
        assert out.choices[0].message.content  # type: ignore[union-attr]
    row = rig.row(r)
    assert (row["status_code"], row["usage_source"]) == (200, "tiktoken")
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert row["cost_usd"] > 0


def test_an_error_body_with_http_200_is_an_upstream_failure(rig: Rig) -> None:
    """Some providers answer an overload with HTTP 200 and `{"error": ...}`: not a completion,
    so not billed and not passed on as a success the SDK cannot read."""
    rig.primary.control(fail_next=1, fail_status=200)
    r = rid()
    with pytest.raises(openai.APIStatusError) as info:
        rig.client.chat.completions.create(
            model="odd-200", messages=msgs(), extra_headers={"x-request-id": r}
        )
    assert info.value.status_code == 502
    assert "answered with an error: mock failure 200" in info.value.message
    row = rig.row(r)
    assert (row["status_code"], row["error_code"], row["cost_usd"]) == (502, "upstream_error", 0)


def test_an_error_body_with_http_200_falls_back(rig: Rig) -> None:
    rig.primary.control(fail_next=1, fail_status=200)
    r = rid()
    raw = rig.client.chat.completions.with_raw_response.create(
        model="odd-200-fb", messages=msgs(), extra_headers={"x-request-id": r}
    )
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-thriftgate-deployment"] == "odd-200-fb-b"
    assert rig.row(r)["route_reason"] == "fallback-after-502"


@pytest.mark.parametrize("stream", [False, True])
def test_a_refusal_keeps_the_upstreams_error_code_and_param(rig: Rig, stream: bool) -> None:
    """Clients branch on OpenAI's codes ("context_length_exceeded"): they pass through."""
    rig.primary.control(
        fail_next=1, fail_status=400, fail_code="context_length_exceeded", fail_param="messages"
    )
    prompt = msgs()
    with pytest.raises(openai.BadRequestError) as info:
        out = rig.client.chat.completions.create(model="rejected", messages=prompt, stream=stream)
        list(out)  # type: ignore[call-overload]
    err = info.value.body
    assert isinstance(err, dict)
    assert (err["code"], err["param"], err["type"]) == (
        "context_length_exceeded",
        "messages",
        "invalid_request_error",
    )
    sent = [r for r in rig.primary.received() if r["body"].get("messages") == prompt]
    assert len(sent) == 1  # a refusal is not retried


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_provider_key_falls_back_and_counts_against_its_deployment(
    rig: Rig, status: int
) -> None:
    """The tenant's key was checked by the gateway, so an upstream 401/403 refused the
    deployment's own key: its fault. The next candidate answers, and its breaker counts it."""
    model = f"denied-fb-{status}"
    threshold = 5  # routing.failure_threshold's default
    rig.primary.control(fail_next=threshold, fail_status=status)
    for i in range(threshold):
        raw = rig.client.chat.completions.with_raw_response.create(
            model=model, messages=msgs(), stream=i % 2 == 1
        )
        out = raw.parse()
        list(out) if i % 2 == 1 else out  # type: ignore[call-overload]
        assert raw.headers["x-thriftgate-deployment"] == model + "-b"
        assert raw.headers["x-thriftgate-route-reason"] == f"fallback-after-{status}"
    # that many in a row opened its breaker: the next request does not try it at all
    before = len(rig.primary.received())
    raw = rig.client.chat.completions.with_raw_response.create(model=model, messages=msgs())
    assert raw.headers["x-thriftgate-deployment"] == model + "-b"
    assert len(rig.primary.received()) == before


def test_a_refused_provider_key_with_nowhere_to_fall_back_is_a_502_naming_it(rig: Rig) -> None:
    rig.primary.control(
        fail_next=1,
        fail_status=401,
        fail_message="Incorrect API key provided: sk-mock-provider-secret-0123456789",
    )
    r = rid()
    with pytest.raises(openai.APIStatusError) as info:
        rig.client.chat.completions.create(
            model="denied", messages=msgs(), extra_headers={"x-request-id": r}
        )
    assert info.value.status_code == 502
    err = info.value.body
    assert isinstance(err, dict)
    assert err["code"] == "upstream_auth_failed"
    assert "refused the gateway's credentials" in err["message"]
    assert "sk-mock" not in str(err)
    row = rig.row(r)
    assert (row["status_code"], row["error_code"]) == (502, "upstream_auth_failed")


def test_a_deployment_that_times_out_falls_back(rig: Rig) -> None:
    """The first choice hangs past its own timeout_s (1 s); the second's is longer (5 s), and
    the request's deadline is the group's largest, so the second serves it. The deadline was
    the first one's timeout_s: it spent all of it, and a timeout never fell back."""
    rig.primary.control(hang_s=DEADLINE_S * 3)
    r = rid()
    raw = rig.client.chat.completions.with_raw_response.create(
        model="late", messages=msgs(), extra_headers={"x-request-id": r}
    )
    assert raw.http_response.status_code == 200 and raw.parse().choices[0].message.content
    assert raw.headers["x-thriftgate-deployment"] == "late-b"
    assert raw.headers["x-thriftgate-route-reason"] == "fallback-after-504"
    row = rig.row(r)
    assert (row["status_code"], row["deployment"], row["route_reason"]) == (
        200,
        "late-b",
        "fallback-after-504",
    )
    assert row["latency_ms"] >= DEADLINE_S * 1000 * 0.9  # the first one had its full timeout


def test_a_deadline_spent_on_one_deployment_reports_that_deployment(rig: Rig) -> None:
    """The first deployment used up the request's whole deadline (its timeout_s is the group's
    largest): no fallback was tried, so the error names the one that timed out and the row does
    not claim a fallback."""
    rig.primary.control(hang_s=DEADLINE_S * 3)
    r, prompt = rid(), msgs()
    with pytest.raises(openai.APIStatusError) as info:
        rig.client.chat.completions.create(
            model="spent", messages=prompt, extra_headers={"x-request-id": r}
        )
    assert info.value.status_code == 504
    assert "Deployment 'spent-a' did not answer" in info.value.message
    assert info.value.response.headers["x-thriftgate-deployment"] == "spent-a"
    assert not info.value.response.headers["x-thriftgate-route-reason"].startswith("fallback")
    row = rig.row(r)
    assert (row["deployment"], row["error_code"]) == ("spent-a", "upstream_timeout")
    assert not row["route_reason"].startswith("fallback"), row["route_reason"]
    assert not [x for x in rig.backup.received() if x["body"].get("messages") == prompt]


def test_a_failed_request_records_no_saving(rig: Rig) -> None:
    """The router predicted a saving when it picked the cheap deployment; the attempt was
    refused, nothing was spent, so the row must not claim that saving."""
    ok = rid()
    rig.client.chat.completions.create(
        model="rejected-saver", messages=msgs(), extra_headers={"x-request-id": ok}
    )
    served = rig.row(ok)
    assert served["deployment"] == "rejected-saver-a" and served["saved_routing_usd"] > 0
    rig.primary.control(fail_next=1, fail_status=400)
    r = rid()
    with pytest.raises(openai.BadRequestError):
        rig.client.chat.completions.create(
            model="rejected-saver", messages=msgs(), extra_headers={"x-request-id": r}
        )
    row = rig.row(r)
    assert (row["status_code"], row["deployment"]) == (400, "rejected-saver-a")
    assert (row["cost_usd"], row["counterfactual_cost_usd"], row["saved_routing_usd"]) == (0, 0, 0)


def test_absurd_upstream_usage_is_recounted(rig: Rig) -> None:
    r = rid()
    out = rig.client.chat.completions.create(
        model="absurd", messages=msgs(), extra_headers={"x-request-id": r}
    )
    assert out.choices[0].message.content == "four words of reply"
    row = rig.row(r)
    assert (row["status_code"], row["usage_source"]) == (200, "tiktoken")
    assert 0 < row["prompt_tokens"] < 100 and 0 < row["completion_tokens"] < 10


def test_a_row_the_database_refuses_does_not_block_the_ledger(rig: Rig) -> None:
    """A spooled row Postgres will never take is set aside; the rest keep flowing."""
    r = rid()
    rig.client.chat.completions.create(
        model="nousage-False", messages=msgs(), extra_headers={"x-request-id": r}
    )
    rig.row(r)
    template = json.loads(
        sql(
            rig.db, "SELECT row_to_json(l)::text AS j FROM usage_ledger l WHERE request_id = $1", r
        )[0]["j"]
    )
    good = {**template, "id": uuid.uuid4().hex, "request_id": "poison-good-" + uuid.uuid4().hex}
    bad = {
        **template,
        "id": uuid.uuid4().hex,
        "request_id": "poison-bad-" + uuid.uuid4().hex,
        "prompt_tokens": 2**40,
    }
    # Hand the rows over as a dead process's spool segment: the gateway adopts and replays it.
    owner = "999999_" + uuid.uuid4().hex[:8]
    spool = rig.gw.spool_dir
    (spool / f"{owner}.lock").touch()
    with open(spool / f"{owner}-000000000001.jsonl", "w") as fh:
        fh.write(json.dumps(bad) + "\n" + json.dumps(good) + "\n")
    rig.row(good["request_id"])
    live = rid()
    rig.client.chat.completions.create(
        model="nousage-False", messages=msgs(), extra_headers={"x-request-id": live}
    )
    rig.row(live)  # the ledger is not stuck behind the bad row
    assert not sql(rig.db, "SELECT 1 FROM usage_ledger WHERE request_id = $1", bad["request_id"])
    kept = "".join(p.read_text() for p in (spool / "quarantine").glob("*.jsonl"))
    assert bad["request_id"] in kept and good["request_id"] not in kept


def test_stall_mid_stream_ends_with_a_timeout_event(rig: Rig) -> None:
    """The first chunk arrives, then the upstream goes quiet for longer than the deadline."""
    rig.slow.control(ms_per_token=DEADLINE_S * 3000, reply="one two three")
    r = rid()
    got: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in rig.client.chat.completions.create(
            model="stall", messages=msgs(), stream=True, extra_headers={"x-request-id": r}
        ):
            if chunk.choices:
                got.append(chunk.choices[0].delta.content or "")
    assert "stalled" in str(info.value)
    assert got  # the first chunk had gone out: no fallback possible, an in-band error instead
    row = rig.row(r)
    assert (row["status_code"], row["error_code"]) == (504, "upstream_timeout")
