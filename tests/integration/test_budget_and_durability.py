"""Budgets under concurrency, and the ledger surviving a SIGKILL."""

from __future__ import annotations

import concurrent.futures
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.support.servers import GatewayServer, mock_deployment, sql, wait_for

pytestmark = pytest.mark.integration


def settled_counters(db_url: str, tenant_id: str) -> list[Any]:
    """The tenant's budget counters once nothing is reserved any more (else empty)."""
    rows = sql(
        db_url, "SELECT spent_usd, reserved_usd FROM budget_counters WHERE tenant_id=$1", tenant_id
    )
    return [r for r in rows if r["reserved_usd"] == 0]


def test_budget_race_50_concurrent_requests_budget_for_10(session_tmp, fresh_pg_url, mock_upstream):
    # One request: 8 prompt + max_tokens 20 reserved at $1/$1 per Mtok -> reserve ~$0.000028,
    # actual (6 prompt + 6 completion) = $0.000012. Budget = 10 actual requests.
    dep = mock_deployment(
        "priced", "budget-model", mock_upstream, input_cost_per_mtok=1, output_cost_per_mtok=1
    )
    gw = GatewayServer(session_tmp, fresh_pg_url, [dep])
    try:
        actual = Decimal(12) / Decimal(1_000_000)
        tid, key = gw.new_tenant(budget_usd=str(actual * 10))
        mock_upstream.control(latency_ms=300)  # keep all 50 in flight together

        def one(i: int) -> int:
            r = httpx.post(
                gw.url + "/chat/completions",
                timeout=30,
                headers={"Authorization": f"Bearer {key}"},
                json={
                    "model": "budget-model",
                    "max_tokens": 6,
                    "messages": [{"role": "user", "content": f"budget probe {i} a"}],
                },
            )
            return r.status_code

        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            codes = list(pool.map(one, range(50)))
        served = codes.count(200)
        refused = [c for c in codes if c != 200]
        assert set(refused) <= {429}
        assert 1 <= served <= 11, codes
        # Spend settles to exactly what was served, and later requests are refused.
        wait_for(
            lambda: (
                sql(
                    gw.db_url,
                    "SELECT count(*) AS n FROM usage_ledger WHERE tenant_id=$1 AND status_code=200",
                    tid,
                )[0]["n"]
                == served
            )
        )
        rows = wait_for(lambda: settled_counters(gw.db_url, tid))
        assert rows and rows[0]["spent_usd"] == actual * served
        mock_upstream.control(latency_ms=0)
        if served >= 10:
            r = httpx.post(
                gw.url + "/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={
                    "model": "budget-model",
                    "messages": [{"role": "user", "content": "one more"}],
                },
            )
            assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
    finally:
        gw.stop()


def test_raising_the_budget_lets_requests_through_again(session_tmp, fresh_pg_url, mock_upstream):
    gw = GatewayServer(session_tmp, fresh_pg_url, [mock_deployment("m", "m", mock_upstream)])
    try:
        tid, key = gw.new_tenant(budget_usd="0")
        c = openai.OpenAI(base_url=gw.url, api_key=key, max_retries=0)
        with pytest.raises(openai.RateLimitError) as exc:
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert exc.value.code == "insufficient_quota"
        assert gw.admin("PATCH", f"/admin/tenants/{tid}", json={"budget_usd": 1}).status_code == 200
        assert c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    finally:
        gw.stop()


def test_sequential_requests_are_not_refused_by_finished_reservations(
    session_tmp, fresh_pg_url, mock_upstream
):
    """Each request reserves ~$10 (max_tokens 500 at $20,000 per Mtok) and costs cents. One
    after the other, a $25 budget serves them all: a finished request's reservation counts as
    released at once, not only when the ledger writer next flushes (slow on purpose here)."""
    dep = mock_deployment(
        "pricey", "pricey-model", mock_upstream, input_cost_per_mtok=1, output_cost_per_mtok=20_000
    )
    gw = GatewayServer(
        session_tmp, fresh_pg_url, [dep], extra_env={"THRIFTGATE_LEDGER_FLUSH_INTERVAL_S": "3"}
    )
    try:
        tid, key = gw.new_tenant(budget_usd="25")
        c = openai.OpenAI(base_url=gw.url, api_key=key, max_retries=0)
        for i in range(6):
            c.chat.completions.create(
                model="pricey-model",
                max_tokens=500,
                messages=[{"role": "user", "content": f"one two three four five {i}"}],
                extra_headers={"cache-control": "no-store"},
            )
        rows = wait_for(lambda: settled_counters(gw.db_url, tid), 15)
        costs = sql(
            gw.db_url, "SELECT sum(cost_usd) AS s FROM usage_ledger WHERE tenant_id=$1", tid
        )
        assert rows[0]["spent_usd"] == costs[0]["s"] < 1
    finally:
        gw.stop()


def test_rate_limit_rpm_returns_429_with_retry_after(gateway):
    _, key = gateway.new_tenant(rpm=2)
    h = {"Authorization": f"Bearer {key}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
    codes = [httpx.post(gateway.url + "/chat/completions", json=body, headers=h) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert codes[2].json()["error"]["code"] == "rate_limit_exceeded"
    assert int(codes[2].headers["retry-after"]) >= 1


def test_sigkill_after_responses_loses_no_ledger_row(session_tmp, fresh_pg_url, mock_upstream):
    spool = session_tmp / "spool-sigkill"
    deps = [mock_deployment("m", "m", mock_upstream)]
    # A long flush interval: rows are certainly still only in the spool when we kill.
    env = {"THRIFTGATE_LEDGER_FLUSH_INTERVAL_S": "30"}
    gw = GatewayServer(session_tmp, fresh_pg_url, deps, spool_dir=spool, extra_env=env)
    tid, key = gw.new_tenant()
    c = openai.OpenAI(base_url=gw.url, api_key=key, max_retries=0)
    ids = []
    for i in range(20):
        rid = f"kill-{i}"
        if i % 2:
            list(
                c.chat.completions.create(
                    model="m",
                    stream=True,
                    extra_headers={"x-request-id": rid},
                    messages=[{"role": "user", "content": f"s {i}"}],
                )
            )
        else:
            c.chat.completions.create(
                model="m",
                extra_headers={"x-request-id": rid},
                messages=[{"role": "user", "content": f"n {i}"}],
            )
        ids.append(rid)
    gw.kill()
    assert sql(fresh_pg_url, "SELECT count(*) AS n FROM usage_ledger")[0]["n"] == 0
    # Restart on the same spool: the dead process's segments are adopted and written once.
    gw2 = GatewayServer(
        session_tmp,
        fresh_pg_url,
        deps,
        spool_dir=spool,
        extra_env={"THRIFTGATE_LEDGER_FLUSH_INTERVAL_S": "0.1"},
    )
    try:
        rows = wait_for(
            lambda: (
                sql(fresh_pg_url, "SELECT request_id FROM usage_ledger WHERE tenant_id=$1", tid)
                if len(sql(fresh_pg_url, "SELECT 1 FROM usage_ledger")) >= 20
                else None
            ),
            timeout_s=15,
        )
        assert rows, "rows were not replayed"
        assert sorted(r["request_id"] for r in rows) == sorted(ids)
    finally:
        gw2.stop()


def test_anthropic_messages_api_through_litellm(session_tmp, pg_url, mock_upstream):
    dep = {
        "name": "claude-local",
        "model": "claude-haiku",
        "provider": "anthropic",
        "upstream_model": "claude-3-5-haiku-20241022",
        "api_base": mock_upstream.base,
        "api_key_env": "MOCK_PROVIDER_KEY",
        "input_cost_per_mtok": 0.8,
        "output_cost_per_mtok": 4,
    }
    gw = GatewayServer(session_tmp, pg_url, [dep])
    try:
        _, key = gw.new_tenant()
        c = openai.OpenAI(base_url=gw.url, api_key=key, max_retries=0)
        raw = c.chat.completions.with_raw_response.create(
            model="claude-haiku",
            max_tokens=50,
            messages=[
                {"role": "system", "content": "be nice"},
                {"role": "user", "content": "hello anthropic friend"},
            ],
            extra_headers={"x-request-id": "req-anthropic"},
        )
        resp = raw.parse()
        assert resp.choices[0].message.content.startswith("Claude echo: hello anthropic friend")
        seen = mock_upstream.received()[-1]
        assert seen["path"] == "/v1/messages" and seen["x-api-key"].startswith("sk-mock-provider")
        assert seen["body"]["system"]
        rows = wait_for(
            lambda: sql(pg_url, "SELECT * FROM usage_ledger WHERE request_id=$1", "req-anthropic")
        )
        assert rows[0]["prompt_tokens"] == resp.usage.prompt_tokens > 0
        streamed = list(
            c.chat.completions.create(
                model="claude-haiku",
                max_tokens=50,
                stream=True,
                messages=[{"role": "user", "content": "stream from claude"}],
            )
        )
        text = "".join(x.choices[0].delta.content or "" for x in streamed if x.choices)
        assert text.strip() == "Claude echo: stream from claude"
        with_usage = list(
            c.chat.completions.create(
                model="claude-haiku",
                max_tokens=50,
                stream=True,
                stream_options={"include_usage": True},
                messages=[{"role": "user", "content": "stream with usage"}],
                extra_headers={"cache-control": "no-store"},
            )
        )
        # OpenAI's shape: every chunk with a choice carries something, the finish chunk comes
        # before the usage chunk, which is last and has no choices.
        for chunk in with_usage[:-1]:
            assert chunk.usage is None and len(chunk.choices) == 1
            choice = chunk.choices[0]
            assert choice.finish_reason or choice.delta.role or choice.delta.content
        assert with_usage[-2].choices[0].finish_reason == "stop"
        assert with_usage[-1].choices == [] and with_usage[-1].usage.completion_tokens > 0
    finally:
        gw.stop()
