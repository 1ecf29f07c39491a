"""OpenAI's service tiers are priced as billed: `flex` at half the standard price, `priority`
above it (litellm's price map lists both for gpt-5), by the tier the upstream says served the
request, streamed or not (the reservation: tests/unit/pipeline/test_budget_service_tier.py)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    create_database,
    drop_database,
    ledger_row,
    mock_deployment,
    sdk_client,
)

pytestmark = pytest.mark.integration

MILLION = Decimal(1_000_000)
# litellm 1.100.5's map for gpt-5, USD per million tokens: standard, flex, priority
PRICES = {
    "default": (Decimal("1.25"), Decimal(10)),
    "flex": (Decimal("0.625"), Decimal(5)),
    "priority": (Decimal("2.5"), Decimal(20)),
}


@pytest.fixture(scope="module")
def gw(session_tmp: Path, mock_upstream: MockUpstreamServer) -> Iterator[GatewayServer]:
    db = create_database("tg_tiers")
    dep = mock_deployment(
        "tiered", "gpt-5-tiered", mock_upstream,
        upstream_model="gpt-5", input_cost_per_mtok=None, output_cost_per_mtok=None,
    )  # fmt: skip
    g = GatewayServer(session_tmp, db, [dep])
    yield g
    g.stop()
    drop_database(db)


def expected(row: dict, tier: str) -> Decimal:
    inp, out = PRICES[tier]
    return (row["prompt_tokens"] * inp + row["completion_tokens"] * out) / MILLION


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("asked", "served"), [("flex", "flex"), ("priority", "priority"),
                                               ("auto", "default"), (None, "default")])  # fmt: skip
def test_each_tier_is_billed_at_its_price(
    gw: GatewayServer, stream: bool, asked: str | None, served: str
) -> None:
    _, key = gw.new_tenant()
    rid = f"tier-{asked}-{stream}"
    extra = {} if asked is None else {"service_tier": asked}
    client = sdk_client(gw, key)
    messages = [{"role": "user", "content": f"price me by my tier please {rid}"}]
    headers = {"x-request-id": rid, "Cache-Control": "no-store"}
    if stream:
        chunks = list(
            client.chat.completions.create(
                model="gpt-5-tiered", messages=messages, stream=True,
                stream_options={"include_usage": True}, extra_headers=headers, **extra,
            )
        )  # fmt: skip
        tiers = {c.service_tier for c in chunks if c.service_tier}
        assert tiers == ({served} if asked else set())
    else:
        reply = client.chat.completions.with_raw_response.create(
            model="gpt-5-tiered", messages=messages, extra_headers=headers, **extra
        )
        assert Decimal(reply.headers["x-thriftgate-cost-usd"]) > 0
    row = ledger_row(gw, rid)
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert row["cost_usd"] == expected(row, served)
    assert row["saved_routing_usd"] == 0  # the same tier at the baseline: no routing saving
    assert row["counterfactual_cost_usd"] == row["cost_usd"]


@pytest.mark.parametrize("tier", ["flex", "priority"])
def test_a_cache_hit_saves_what_its_tier_would_have_cost(gw: GatewayServer, tier: str) -> None:
    """A hit of a flex request avoided a flex-priced call, not a standard one (hunt9 h6: the
    saving was priced at the standard tier, twice what flex would have cost)."""
    _, key = gw.new_tenant()
    client = sdk_client(gw, key)
    messages = [{"role": "user", "content": f"Which river is the longest one, asked at {tier}?"}]
    for rid in (f"hit-{tier}-miss", f"hit-{tier}-hit"):
        client.chat.completions.create(
            model="gpt-5-tiered", messages=messages, service_tier=tier,
            extra_headers={"x-request-id": rid},
        )  # fmt: skip
    miss, hit = ledger_row(gw, f"hit-{tier}-miss"), ledger_row(gw, f"hit-{tier}-hit")
    assert miss["cache_status"] == "miss" and hit["cache_status"] == "hit-exact"
    assert miss["cost_usd"] == expected(miss, tier)
    assert hit["cost_usd"] == 0
    assert hit["saved_cache_usd"] == hit["counterfactual_cost_usd"] == expected(hit, tier)


def test_the_responses_api_says_which_tier_served(gw: GatewayServer) -> None:
    """`service_tier: "auto"` came back as "auto" from the Responses API, where chat (and
    OpenAI) say "default", the tier that served it (hunt9 h6)."""
    _, key = gw.new_tenant()
    client = sdk_client(gw, key)
    ask = {"model": "gpt-5-tiered", "service_tier": "auto"}
    assert client.responses.create(input="which tier", **ask).service_tier == "default"
    events = list(client.responses.create(input="which tier, streamed", stream=True, **ask))
    assert events[-1].response.service_tier == "default"


def test_a_cache_hit_names_no_tier(gw: GatewayServer) -> None:
    """A hit was served by no tier; it said the tier of the request that filled the cache."""
    _, key = gw.new_tenant()
    client = sdk_client(gw, key)
    ask = {"model": "gpt-5-tiered", "messages": [{"role": "user", "content": "tier of a hit"}]}
    miss = client.chat.completions.create(service_tier="flex", **ask)
    assert miss.service_tier == "flex"
    hit = client.chat.completions.with_raw_response.create(service_tier="priority", **ask)
    assert hit.headers["x-thriftgate-cache"] == "hit-exact"
    assert hit.parse().service_tier is None
