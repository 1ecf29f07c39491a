"""The router's money with `thriftgate/auto` and a tenant's own tier, end to end (hunt 8)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import openai
import pytest

from tests.support.servers import GatewayServer, MockUpstreamServer, ledger_row, mock_deployment

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiers(
    session_tmp: Path, pg_url: str, mock_upstream: MockUpstreamServer
) -> Iterator[GatewayServer]:
    suffix = uuid.uuid4().hex[:6]
    server = GatewayServer(
        session_tmp,
        pg_url,
        [
            mock_deployment(
                f"big-{suffix}",
                "big",
                mock_upstream,
                input_cost_per_mtok=3,
                output_cost_per_mtok=9,
                default=True,
            ),
            mock_deployment(
                f"small-{suffix}",
                "small",
                mock_upstream,
                input_cost_per_mtok=0.1,
                output_cost_per_mtok=0.2,
                default=True,
            ),
        ],
        file_config={"auto": {"models": ["big", "small"]}},
    )
    yield server
    server.stop()


def test_auto_savings_are_priced_against_the_tenants_own_tier(tiers: GatewayServer) -> None:
    """A tenant whose `auto_models` is [small] can only ever be served by small: routing saved
    it nothing. Its rows claimed the gap to `big` (the file's first auto model, which it cannot
    use) as routing savings: 28x the request's cost in the hunt's repro."""
    _, key = tiers.new_tenant(flags={"auto_models": ["small"]})
    client = openai.OpenAI(base_url=tiers.url, api_key=key, max_retries=0, timeout=30)
    rid = f"auto-tier-{uuid.uuid4().hex[:8]}"
    raw = client.chat.completions.with_raw_response.create(
        model="thriftgate/auto",
        messages=[{"role": "user", "content": f"which tier am I on {rid}"}],
        max_tokens=20,
        extra_headers={"x-request-id": rid, "Cache-Control": "no-store"},
    )
    assert raw.headers["x-thriftgate-deployment"].startswith("small-")
    assert Decimal(raw.headers["x-thriftgate-saved-usd"]) == 0
    row = ledger_row(tiers, rid)
    assert row["cost_usd"] > 0
    assert (row["counterfactual_cost_usd"], row["saved_routing_usd"]) == (row["cost_usd"], 0)
