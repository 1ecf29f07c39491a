"""Budgets that recover: from a crashed process's reservations, and across a period change."""

from __future__ import annotations

import contextlib
import threading
import time
from decimal import Decimal

import httpx
import openai
import pytest

from gateway.accounting.budgets import live_reserved, reservation_epoch
from gateway.settings import Settings
from tests.support.servers import GatewayServer, mock_deployment, sql, wait_for

pytestmark = pytest.mark.integration

# max_tokens 20 at $1 per Mtok both ways reserves ~$0.000028; the mock echoes the prompt, so a
# one-word question costs 4 + 2 tokens: $0.000006.
PRICED = {"input_cost_per_mtok": 1, "output_cost_per_mtok": 1}


def ask(gw: GatewayServer, key: str, text: str, timeout: float = 30) -> httpx.Response:
    return httpx.post(
        gw.url + "/chat/completions",
        headers={"Authorization": f"Bearer {key}", "Cache-Control": "no-store"},
        json={"model": "m", "max_tokens": 20, "messages": [{"role": "user", "content": text}]},
        timeout=timeout,
    )


def reserved(db_url: str, tenant_id: str) -> float:
    rows = sql(
        db_url,
        "SELECT reserved_usd + reserved_prev_usd AS r FROM budget_counters WHERE tenant_id=$1",
        tenant_id,
    )
    return float(sum(r["r"] for r in rows))


def test_reservations_of_a_killed_gateway_stop_holding_the_budget(
    session_tmp, fresh_pg_url, mock_upstream
):
    """SIGKILL with a request in flight: its reservation is never settled. It must not hold the
    tenant's budget for the rest of the period, only for at most two reservation lifetimes."""
    deps = [mock_deployment("m", "m", mock_upstream, **PRICED)]
    env = {"THRIFTGATE_BUDGET_RESERVATION_TTL_S": "3"}
    gw = GatewayServer(session_tmp, fresh_pg_url, deps, extra_env=env)
    tid, key = gw.new_tenant(budget_usd="0.00002")  # less than one request's reservation
    mock_upstream.control(latency_ms=10_000)
    try:

        def held() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the gateway dies under it
                ask(gw, key, "held", 20)

        in_flight = threading.Thread(target=held, daemon=True)
        in_flight.start()
        wait_for(lambda: reserved(fresh_pg_url, tid) > 0, 10)
        gw.kill()
        in_flight.join(5)
    finally:
        mock_upstream.control(latency_ms=0)
    assert reserved(fresh_pg_url, tid) > 0  # nobody will ever settle it
    gw2 = GatewayServer(session_tmp, fresh_pg_url, deps, extra_env=env)
    try:
        started = time.monotonic()
        answer = wait_for(
            lambda: (r := ask(gw2, key, "after the crash")).status_code == 200 and r, 20, 0.5
        )
        assert answer.json()["choices"][0]["message"]["content"]
        assert time.monotonic() - started < 12  # two lifetimes of 3 s, plus slack
    finally:
        gw2.stop()


def test_by_default_a_killed_replicas_reservation_stops_counting_within_two_minutes(
    session_tmp, fresh_pg_url, mock_upstream
):
    """Replicas behind a load balancer, one SIGKILLed (OOM, a node lost) mid-request: its
    reservations are never settled, and with the default lifetime (600 s) they held the
    tenant's budget for 10 to 20 minutes; a tenant near the end of its budget was refused
    ("retry when they finish", Retry-After: 1) for that long. Running requests carry their
    reservations into each new generation (BudgetBook.hold), so the lifetime no longer has to
    outlast a request: by default a dead process's reservations stop counting within two
    minutes. Read off the counter the gateway wrote, at the clock two minutes on."""
    deps = [mock_deployment("m", "m", mock_upstream, **PRICED)]
    gw = GatewayServer(session_tmp, fresh_pg_url, deps)  # the default lifetime
    tid, key = gw.new_tenant(budget_usd="0.00002")
    mock_upstream.control(latency_ms=10_000)
    try:

        def held() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the gateway dies under it
                ask(gw, key, "held", 20)

        in_flight = threading.Thread(target=held, daemon=True)
        in_flight.start()
        assert wait_for(lambda: reserved(fresh_pg_url, tid) > 0, 10)
        gw.kill()
        in_flight.join(5)
    finally:
        mock_upstream.control(latency_ms=0)
        gw.stop()
    [row] = sql(
        fresh_pg_url,
        "SELECT reserved_usd, reserved_prev_usd, reserve_epoch FROM budget_counters "
        "WHERE tenant_id = $1",
        tid,
    )
    ttl = Settings().budget_reservation_ttl_s

    def counts_at(at: float) -> Decimal:
        epoch = reservation_epoch(ttl, at)
        return live_reserved(
            row["reserved_usd"], row["reserved_prev_usd"], row["reserve_epoch"], epoch
        )

    assert counts_at(time.time()) > 0  # still held now: nobody can tell it is dead
    assert counts_at(time.time() + 120) == 0


def test_changing_the_budget_period_keeps_what_was_spent(session_tmp, fresh_pg_url, mock_upstream):
    """Spend a monthly budget, then switch the tenant to daily and to total: the money spent
    today (and ever) still counts, it does not start again from zero."""
    deps = [mock_deployment("m", "m", mock_upstream, **PRICED)]
    gw = GatewayServer(session_tmp, fresh_pg_url, deps)
    try:
        tid, key = gw.new_tenant(budget_usd="0.00003")  # room for a few answers
        c = openai.OpenAI(base_url=gw.url, api_key=key, max_retries=0)
        refused = None
        for i in range(6):
            try:
                c.chat.completions.create(
                    model="m",
                    max_tokens=20,
                    messages=[{"role": "user", "content": f"spend {i}"}],
                    extra_headers={"cache-control": "no-store"},
                )
            except openai.RateLimitError as exc:
                refused = exc
                break
            wait_for(lambda: reserved(fresh_pg_url, tid) == 0, 10)
        assert refused is not None and refused.code == "insufficient_quota"
        for period in ("daily", "total"):
            r = gw.admin("PATCH", f"/admin/tenants/{tid}", json={"budget_period": period})
            assert r.status_code == 200, r.text
            after = ask(gw, key, f"spend again, {period}")
            assert after.status_code == 429, (period, after.text)
            assert after.json()["error"]["code"] == "insufficient_quota"
    finally:
        gw.stop()


def test_a_libpq_style_database_url_works_budgets_included(
    session_tmp, fresh_pg_url, mock_upstream
):
    """Cloud providers hand out `?sslmode=...` URLs. asyncpg calls it `ssl`, and the budget
    check's raw pool must take it too: had it failed, fail-open would serve a spent tenant."""
    deps = [mock_deployment("m", "m", mock_upstream, **PRICED)]
    gw = GatewayServer(session_tmp, fresh_pg_url + "?sslmode=disable", deps)
    try:
        tid, key = gw.new_tenant(budget_usd="0.000005")  # one answer ($0.000006) spends it
        assert ask(gw, key, "first").status_code == 200
        wait_for(lambda: reserved(fresh_pg_url, tid) == 0, 10)
        refused = ask(gw, key, "second")
        assert refused.status_code == 429, refused.text
        assert "budget store unavailable" not in gw.log()
    finally:
        gw.stop()
