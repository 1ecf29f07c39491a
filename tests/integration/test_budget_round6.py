"""Budgets, hardening round 6: period switches, hardware-priced deployments, several workers,
and what a budget refusal says."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import openai
import pytest

from gateway.accounting.budgets import period_start
from tests.support.servers import GatewayServer, mock_deployment, sql, wait_for

pytestmark = pytest.mark.integration

# $1 per Mtok both ways: max_tokens 20 reserves ~$0.00003; an echoed one-line question ~$0.00001
PRICED = {"input_cost_per_mtok": 1, "output_cost_per_mtok": 1}


def ask(gw: GatewayServer, key: str, text: str, max_tokens: int = 20) -> httpx.Response:
    """One request on a new connection (so with several workers any of them may take it)."""
    return httpx.post(
        gw.url + "/chat/completions",
        headers={"Authorization": f"Bearer {key}", "Cache-Control": "no-store"},
        json={
            "model": "m",
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": text}],
        },
        timeout=60,
    )


def reserved(db_url: str, tenant_id: str) -> Decimal:
    rows = sql(
        db_url,
        "SELECT reserved_usd + reserved_prev_usd AS r FROM budget_counters WHERE tenant_id=$1",
        tenant_id,
    )
    return Decimal(sum(r["r"] for r in rows))


def ledger_spent(db_url: str, tenant_id: str, since: datetime) -> Decimal:
    rows = sql(
        db_url,
        "SELECT coalesce(sum(cost_usd), 0) AS s FROM usage_ledger "
        "WHERE tenant_id=$1 AND created_at >= $2",
        tenant_id,
        since,
    )
    return Decimal(rows[0]["s"])


def counter_spent(db_url: str, tenant_id: str, start: datetime) -> Decimal | None:
    rows = sql(
        db_url,
        "SELECT spent_usd FROM budget_counters WHERE tenant_id=$1 AND period_start=$2",
        tenant_id,
        start,
    )
    return Decimal(rows[0]["spent_usd"]) if rows else None


def settled(db_url: str, tenant_id: str, requests: int) -> bool:
    rows = sql(db_url, "SELECT count(*) AS n FROM usage_ledger WHERE tenant_id=$1", tenant_id)
    return rows[0]["n"] >= requests and reserved(db_url, tenant_id) == 0


def test_switching_the_period_away_and_back_counts_what_was_spent_meanwhile(
    session_tmp, fresh_pg_url, mock_upstream
):
    """monthly -> daily -> monthly: what was spent while the daily period was in force is part
    of the month too. The monthly counter was left where the first switch found it, and the
    tenant spent about twice its monthly budget."""
    deps = [mock_deployment("m", "m", mock_upstream, **PRICED)]
    gw = GatewayServer(session_tmp, fresh_pg_url, deps)
    try:
        tid, key = gw.new_tenant(budget_usd="1", budget_period="monthly")
        sent = 0
        for period, n in (("monthly", 1), ("daily", 3), ("monthly", 1)):
            r = gw.admin("PATCH", f"/admin/tenants/{tid}", json={"budget_period": period})
            assert r.status_code == 200, r.text
            for i in range(n):
                assert ask(gw, key, f"{period} spend {i}").status_code == 200
                sent += 1
        assert wait_for(lambda: settled(fresh_pg_url, tid, sent), 10)
        now = datetime.now(UTC)
        for period in ("monthly", "daily", "total"):
            start = period_start(period, now)
            spent = ledger_spent(fresh_pg_url, tid, start)
            assert spent > 0
            assert counter_spent(fresh_pg_url, tid, start) == spent, period
    finally:
        gw.stop()


def test_switching_back_keeps_the_monthly_budget(session_tmp, fresh_pg_url, mock_upstream):
    """The hunter's case: once the month's spend passes the budget under the daily period, the
    monthly period refuses again."""
    deps = [mock_deployment("m", "m", mock_upstream, **PRICED)]
    gw = GatewayServer(session_tmp, fresh_pg_url, deps)
    try:
        first = ask_and_cost(gw, fresh_pg_url)
        budget = first * Decimal("2.5")  # two and a half answers in the month, or in a day
        tid, key = gw.new_tenant(budget_usd=str(budget), budget_period="monthly")
        assert ask(gw, key, "spend 0").status_code == 200
        gw.admin("PATCH", f"/admin/tenants/{tid}", json={"budget_period": "daily"})
        for i in (1, 2):  # the day's spend (all of the month's so far) is still under it
            assert ask(gw, key, f"spend {i}").status_code == 200
            assert wait_for(lambda n=i + 1: settled(fresh_pg_url, tid, n), 10)
        gw.admin("PATCH", f"/admin/tenants/{tid}", json={"budget_period": "monthly"})
        refused = ask(gw, key, "over the month's budget")
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "insufficient_quota"
    finally:
        gw.stop()


def ask_and_cost(gw: GatewayServer, db_url: str) -> Decimal:
    """What one `spend N` question costs (a budget-less tenant asks it once)."""
    tid, key = gw.new_tenant()
    assert ask(gw, key, "spend 9").status_code == 200
    rows = wait_for(
        lambda: sql(db_url, "SELECT cost_usd FROM usage_ledger WHERE tenant_id=$1", tid), 10
    )
    return Decimal(rows[0]["cost_usd"])


def test_a_hardware_priced_deployment_reserves_what_it_will_bill(
    session_tmp, fresh_pg_url, mock_upstream
):
    """A deployment priced by the hour ($0 configured per token) is billed at its effective
    price at the engine's load; its reservation was $0, so 20 concurrent requests spent 3.8x a
    budget that a token-priced model would have kept to one request over it."""
    hw = {"hardware_usd_per_hour": 36, "ms_per_token": 10}
    deps = [
        mock_deployment(
            "h-local", "m", mock_upstream, input_cost_per_mtok=0, output_cost_per_mtok=0, **hw
        )
    ]
    gw = GatewayServer(session_tmp, fresh_pg_url, deps)
    try:
        probe = ask_and_cost(gw, fresh_pg_url)  # one request alone: the dearest load
        assert probe > 0
        budget = probe * 2
        tid, key = gw.new_tenant(budget_usd=str(budget), budget_period="daily")
        mock_upstream.control(latency_ms=2000)  # all 20 in flight together
        statuses: list[int] = []

        def one(i: int) -> None:
            statuses.append(ask(gw, key, f"spend {i % 10}", max_tokens=16).status_code)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        mock_upstream.control(latency_ms=0)
        admitted = statuses.count(200)
        assert admitted >= 1 and admitted + statuses.count(429) == 20, statuses
        assert wait_for(lambda: settled(fresh_pg_url, tid, 20), 15)
        spent = ledger_spent(fresh_pg_url, tid, period_start("total"))
        # at most one request's reservation over the budget (README's bound); it was 3.8x
        assert spent <= budget * 2, (spent, budget, statuses)
    finally:
        gw.stop()


LARGE = {"input_cost_per_mtok": 1, "output_cost_per_mtok": 3}  # max_tokens 1e6 reserves ~$3


def test_lone_requests_are_not_refused_with_two_workers(session_tmp, fresh_pg_url, mock_upstream):
    """README: a large reservation never refuses a lone request. With two workers, one saw the
    other's finished requests still reserved until that worker's ledger flush, and refused one
    request in five of a one-at-a-time client with $0.0001 of $5 spent."""
    deps = [mock_deployment("m", "m", mock_upstream, **LARGE)]
    gw = GatewayServer(session_tmp, fresh_pg_url, deps, workers=2)
    try:
        _, key = gw.new_tenant(budget_usd="5", budget_period="daily")
        statuses = [ask(gw, key, f"one at a time {i}", 1_000_000) for i in range(30)]
        refused = [r.text for r in statuses if r.status_code != 200]
        assert not refused, (len(refused), refused[:1])
    finally:
        gw.stop()


def test_a_raised_budget_admits_at_once_on_every_worker(session_tmp, fresh_pg_url, mock_upstream):
    """A refusal was remembered for half a second by each worker, and the PATCH cleared it only
    on the worker that took it: the other kept refusing a budget raised from $1e-7 to $1."""
    deps = [mock_deployment("m", "m", mock_upstream, **PRICED)]
    gw = GatewayServer(session_tmp, fresh_pg_url, deps, workers=2)
    try:
        tid, key = gw.new_tenant(budget_usd="0.0000001", budget_period="daily")
        assert ask(gw, key, "the one it can afford").status_code == 200
        assert wait_for(lambda: settled(fresh_pg_url, tid, 1), 10)
        before = [ask(gw, key, f"spent {i}").status_code for i in range(8)]
        assert before == [429] * 8
        r = gw.admin("PATCH", f"/admin/tenants/{tid}", json={"budget_usd": "1"})
        assert r.status_code == 200, r.text
        after = [ask(gw, key, f"raised {i}") for i in range(8)]
        assert [a.status_code for a in after] == [200] * 8, [a.text for a in after]
    finally:
        gw.stop()


def test_a_spent_budget_says_so_and_the_sdk_does_not_retry(
    session_tmp, fresh_pg_url, mock_upstream
):
    """A budget spent for the period: the 429 says what was spent and tells OpenAI's SDK not to
    retry (it retried twice, 1.6 s and two more ledger rows, for a certain refusal)."""
    deps = [mock_deployment("m", "m", mock_upstream, **PRICED)]
    gw = GatewayServer(session_tmp, fresh_pg_url, deps)
    try:
        tid, key = gw.new_tenant(budget_usd="0.000001", budget_period="daily")
        assert ask(gw, key, "the one it can afford").status_code == 200
        assert wait_for(lambda: settled(fresh_pg_url, tid, 1), 10)
        client = openai.OpenAI(base_url=gw.url, api_key=key, max_retries=2, timeout=30)
        today = period_start("daily")
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(
                model="m", max_tokens=20, messages=[{"role": "user", "content": "more"}]
            )
        assert refused.value.code == "insufficient_quota"
        assert refused.value.response.headers.get("x-should-retry") == "false"
        message = refused.value.message
        assert "used up" in message and "spent" in message, message
        # when it renews, in UTC (hunt10 h1: "wait for the next period" said neither)
        renews = {
            f"{d + timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}" for d in (today, period_start("daily"))
        }
        assert any(f"next period, from {r}." in message for r in renews), message
        rows = wait_for(
            lambda: sql(
                fresh_pg_url,
                "SELECT count(*) AS n FROM usage_ledger WHERE tenant_id=$1 AND status_code=429",
                tid,
            )[0]["n"],
            10,
        )
        assert rows == 1  # one attempt, not three
    finally:
        gw.stop()


def test_a_budget_held_by_requests_in_flight_says_so(session_tmp, fresh_pg_url, mock_upstream):
    """Most of the budget left, but reserved by a request in flight: the 429 said 'used up'.
    It now says what is spent and what is reserved, and that a retry may pass (Retry-After)."""
    deps = [mock_deployment("m", "m", mock_upstream, **LARGE)]
    gw = GatewayServer(session_tmp, fresh_pg_url, deps)
    try:
        tid, key = gw.new_tenant(budget_usd="2", budget_period="daily")
        mock_upstream.control(latency_ms=8000)
        first = threading.Thread(target=ask, args=(gw, key, "long one", 1_000_000), daemon=True)
        first.start()
        assert wait_for(lambda: reserved(fresh_pg_url, tid) > 2, 10)
        r = ask(gw, key, "beside it", 20)
        assert r.status_code == 429, r.text
        assert r.headers.get("retry-after") and r.headers.get("x-should-retry") != "false"
        message = r.json()["error"]["message"]
        assert "used up" not in message and "reserved" in message, message
        mock_upstream.control(latency_ms=0)
        first.join(30)
    finally:
        mock_upstream.control(latency_ms=0)
        gw.stop()
