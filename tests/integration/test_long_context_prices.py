"""Long-context prices: a request whose prompt is longer than a model's threshold (Gemini 2.5
Pro, Claude Sonnet 4/4.5 above 200k tokens, GPT-5.4 above 272k) is billed at the higher
prices for all its tokens, prompt and answer, as the provider invoices it. litellm's map lists
them (`*_above_200k_tokens`); a deployment may configure its own (`long_context_prices`). The
ledger, the budget reservation and the router's predicted cost all use them (hunt11 h111)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import openai
import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    create_database,
    dashboard_session,
    drop_database,
    ledger_row,
    mock_deployment,
    sdk_client,
    sql,
    wait_for,
)

pytestmark = pytest.mark.integration

MILLION = Decimal(1_000_000)
# a configured deployment: $1 / $2 per 1M tokens, $10 / $20 above 1,000 prompt tokens
TIERED = {
    "input_cost_per_mtok": 1,
    "output_cost_per_mtok": 2,
    "long_context_prices": [
        {"above_prompt_tokens": 1000, "input_cost_per_mtok": 10, "output_cost_per_mtok": 20}
    ],
}


@pytest.fixture(scope="module")
def gw(session_tmp: Path, mock_upstream: MockUpstreamServer) -> Iterator[GatewayServer]:
    db = create_database("tg_longctx")
    deps = [
        # priced from litellm's map: gemini-2.5-pro, $1.25 / $10, above 200k $2.5 / $15
        mock_deployment("gem", "gem", mock_upstream, upstream_model="gemini-2.5-pro"),
        mock_deployment("tiered", "tiered", mock_upstream, **TIERED),
        # one group: the tiered deployment is the cheaper one for short prompts only
        mock_deployment("pick-tiered", "pick", mock_upstream, default=True, **TIERED),
        mock_deployment("pick-flat", "pick", mock_upstream, input_cost_per_mtok=3,
                        output_cost_per_mtok=3),
    ]  # fmt: skip
    for dep in deps[:1]:  # litellm's prices
        del dep["input_cost_per_mtok"], dep["output_cost_per_mtok"]
    g = GatewayServer(session_tmp, db, deps)
    yield g
    g.stop()
    drop_database(db)


def words(n: int) -> str:
    """A user message the mock upstream counts as n + 3 prompt tokens."""
    return " ".join(["word"] * n)


def ask(client: openai.OpenAI, model: str, text: str, rid: str, **extra: object) -> object:
    return client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": text}],
        extra_headers={"x-request-id": rid, "Cache-Control": "no-store"},
        **extra,  # type: ignore[arg-type]
    )


def cost(row: dict, inp: Decimal | int, out: Decimal | int) -> Decimal:
    return (row["prompt_tokens"] * Decimal(inp) + row["completion_tokens"] * Decimal(out)) / MILLION


def test_a_prompt_above_200k_tokens_is_billed_at_gemini_long_context_prices(
    gw: GatewayServer,
) -> None:
    """A 250k-token prompt to Gemini 2.5 Pro was billed at $1.25 / $10 per 1M, half of the
    $2.5 / $15 Google invoices for a prompt above 200k tokens."""
    _, key = gw.new_tenant()
    client = sdk_client(gw, key)
    raw = ask(client, "gem", words(250_000), "longctx-gem")
    row = ledger_row(gw, "longctx-gem")
    assert row["prompt_tokens"] == 250_003
    expected = cost(row, Decimal("2.5"), 15)
    assert row["cost_usd"] == expected
    assert Decimal(raw.headers["x-thriftgate-cost-usd"]) == expected  # type: ignore[attr-defined]
    assert row["counterfactual_cost_usd"] == expected
    short = ask(client, "gem", words(1000), "shortctx-gem")
    assert short is not None
    assert ledger_row(gw, "shortctx-gem")["cost_usd"] == cost(
        ledger_row(gw, "shortctx-gem"), Decimal("1.25"), 10
    )


@pytest.mark.parametrize("stream", [False, True])
def test_configured_long_context_prices_apply_above_their_threshold(
    gw: GatewayServer, stream: bool
) -> None:
    """`above_prompt_tokens: 1000`: a prompt of 1,000 tokens is billed at the base prices, one
    of 1,001 at the long-context ones (as the providers and litellm say: more than)."""
    _, key = gw.new_tenant()
    client = sdk_client(gw, key)
    for n, prices in ((997, (1, 2)), (998, (10, 20))):  # 1,000 and 1,001 prompt tokens
        rid = f"longctx-cfg-{n}-{stream}"
        if stream:
            list(
                client.chat.completions.create(
                    model="tiered", messages=[{"role": "user", "content": words(n)}],
                    stream=True, stream_options={"include_usage": True},
                    extra_headers={"x-request-id": rid, "Cache-Control": "no-store"},
                )
            )  # fmt: skip
        else:
            ask(client, "tiered", words(n), rid)
        row = ledger_row(gw, rid)
        assert row["prompt_tokens"] == n + 3
        assert row["cost_usd"] == cost(row, *prices)


def test_the_budget_reserves_at_the_long_context_price(
    gw: GatewayServer, mock_upstream: MockUpstreamServer
) -> None:
    """A 1,500-token prompt held a reservation at the base price ($0.0019) while it ran and
    was billed $0.0152 at the long-context one: tenants near the end of their budget,
    admitted beside it, overspent by the difference. It reserves at least what it bills."""
    tenant, key = gw.new_tenant(budget_usd="1")
    client = sdk_client(gw, key)
    mock_upstream.control(latency_ms=1500, honor_max_tokens=True)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(ask, client, "tiered", words(1500), "longctx-budget", max_tokens=10)
        held = wait_for(lambda: reserved_now(gw, tenant), timeout_s=10)
        running.result()
    row = ledger_row(gw, "longctx-budget")
    assert row["cost_usd"] == cost(row, 10, 20) > 0
    assert held >= row["cost_usd"]


def reserved_now(gw: GatewayServer, tenant: str) -> Decimal:
    rows = sql(gw.db_url, "SELECT reserved_usd FROM budget_counters WHERE tenant_id = $1", tenant)
    return sum((r["reserved_usd"] for r in rows), Decimal(0))


def test_the_router_prices_a_long_prompt_at_each_deployment_s_long_context_price(
    gw: GatewayServer,
) -> None:
    """pick-tiered ($1 / $2, $10 / $20 above 1,000 tokens) is cheaper than pick-flat ($3 / $3)
    for a short prompt, dearer for a long one: the router chose it for both."""
    _, key = gw.new_tenant()
    client = sdk_client(gw, key)
    short = ask(client, "pick", words(100), "longctx-pick-short")
    assert short.headers["x-thriftgate-deployment"] == "pick-tiered"  # type: ignore[attr-defined]
    long = ask(client, "pick", words(1500), "longctx-pick-long")
    assert long.headers["x-thriftgate-deployment"] == "pick-flat"  # type: ignore[attr-defined]
    row = ledger_row(gw, "longctx-pick-long")
    assert row["cost_usd"] == cost(row, 3, 3)
    # the baseline (pick-tiered, the default) would have billed its long-context price
    assert row["counterfactual_cost_usd"] == cost(row, 10, 20)
    assert row["saved_routing_usd"] == cost(row, 10, 20) - cost(row, 3, 3)


def test_admin_deployments_lists_the_long_context_prices_in_plain_digits(
    gw: GatewayServer,
) -> None:
    """An operator sees what a long prompt is billed at. litellm's $10 read `1E+1` there (and
    on the dashboard's deployments page)."""
    listed = {d["name"]: d for d in gw.admin("GET", "/admin/deployments").json()["data"]}
    gem = listed["gem"]
    assert (gem["input_cost_per_mtok"], gem["output_cost_per_mtok"]) == ("1.25", "10")
    assert gem["long_context_prices"] == [
        {"above_prompt_tokens": 200_000, "input_cost_per_mtok": "2.5", "output_cost_per_mtok": "15"}
    ]
    assert gem["web_search_usd_per_query"] == {"low": "0.035", "medium": "0.035", "high": "0.035"}
    assert listed["tiered"]["long_context_prices"][0]["above_prompt_tokens"] == 1000
    assert listed["pick-flat"]["long_context_prices"] == []
    dash = dashboard_session(gw)
    try:
        page = dash.get("/dashboard/deployments")
    finally:
        dash.close()
    assert page.status_code == 200 and "1.25 / 10<" in page.text and "1E+1" not in page.text
    assert "above 200,000 prompt tokens: 2.5 / 15<" in page.text
    assert "above 1,000 prompt tokens: 10 / 20<" in page.text
