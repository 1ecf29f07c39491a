"""What each request cost and saved, as the client is told and as the ledger keeps it, for a
group whose default (the baseline) is dear and whose cheap deployment the router prefers
(hardening round 11). A real gateway on Postgres, the project's mock upstream, the openai SDK.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    ledger_row,
    mock_deployment,
    sdk_client,
)

pytestmark = pytest.mark.integration


class Rig:
    def __init__(self, tmp: Path, db: str) -> None:
        self.dear = MockUpstreamServer(tmp)
        self.cheap = MockUpstreamServer(tmp)
        deps = [
            mock_deployment(
                "dear", "gpt-4o", self.dear,
                input_cost_per_mtok=2.5, output_cost_per_mtok=10, default=True,
            ),
            mock_deployment(
                "cheap", "gpt-4o", self.cheap, input_cost_per_mtok=0.25, output_cost_per_mtok=1
            ),
        ]  # fmt: skip
        self.gw = GatewayServer(tmp, db, deps)
        _, key = self.gw.new_tenant()
        self.client = sdk_client(self.gw, key)

    def stop(self) -> None:
        for server in (self.gw, self.dear, self.cheap):
            server.stop()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[Rig]:
    r = Rig(tmp_path_factory.mktemp("money-proof"), pg_url)
    yield r
    r.stop()


@pytest.fixture(autouse=True)
def _calm(rig: Rig) -> Iterator[None]:
    yield
    rig.cheap.reset()
    rig.dear.reset()


def rid() -> str:
    return "proof-" + uuid.uuid4().hex[:12]


def saved(row: dict[str, Any]) -> Decimal:
    return Decimal(row["saved_cache_usd"] + row["saved_compression_usd"] + row["saved_routing_usd"])


def test_a_stream_cut_short_is_billed_and_claims_no_saving(rig: Rig) -> None:
    """The cheap deployment drops the connection mid-stream: the client got part of an answer
    and an in-band error, the ledger bills what streamed, and no saving is claimed for it (the
    client's retry claims the whole counterfactual); the usage chunk says the same."""
    rig.cheap.control(truncate_stream=True, reply="one two three four five six seven eight")
    r = rid()
    usage_chunk = None
    with pytest.raises(openai.APIError):
        for chunk in rig.client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "Count to eight in words please"}],
            stream=True,
            stream_options={"include_usage": True},
            temperature=0.5,
            extra_headers={"x-request-id": r},
        ):
            if (chunk.model_extra or {}).get("x_thriftgate"):
                usage_chunk = chunk
    row = ledger_row(rig.gw, r)
    assert (row["status_code"], row["deployment"]) == (502, "cheap")
    assert row["cost_usd"] > 0
    assert saved(row) == 0
    assert row["counterfactual_cost_usd"] == row["cost_usd"]
    assert usage_chunk is not None
    priced = (usage_chunk.model_extra or {})["x_thriftgate"]
    assert Decimal(priced["cost_usd"]) == row["cost_usd"]
    assert Decimal(priced["saved_usd"]) == 0


def test_a_responses_stream_says_what_it_cost_and_saved(rig: Rig) -> None:
    """A Responses stream's headers leave before its cost is known, as a chat stream's do; its
    terminal event's response carries `x_thriftgate`, as a chat stream's usage chunk does."""
    r = rid()
    final = None
    for event in rig.client.responses.create(
        model="gpt-4o",
        input="Tell me a fun fact about octopuses.",
        stream=True,
        temperature=0.5,
        extra_headers={"x-request-id": r},
    ):
        if event.type == "response.completed":
            final = event.response
    assert final is not None
    row = ledger_row(rig.gw, r)
    assert (row["status_code"], row["deployment"]) == (200, "cheap")
    assert saved(row) > 0  # routed to the cheap deployment
    priced = (final.model_extra or {}).get("x_thriftgate")
    assert priced is not None
    assert Decimal(priced["cost_usd"]) == row["cost_usd"] > 0
    assert Decimal(priced["saved_usd"]) == saved(row)
    # the SDK's own helper hands it over too
    r = rid()
    with rig.client.responses.stream(
        model="gpt-4o", input="Tell me a fun fact about squids.", temperature=0.5,
        extra_headers={"x-request-id": r},
    ) as stream:  # fmt: skip
        response = stream.get_final_response()
    row = ledger_row(rig.gw, r)
    assert Decimal((response.model_extra or {})["x_thriftgate"]["cost_usd"]) == row["cost_usd"]
