"""A litellm-translated stream (Anthropic here) whose upstream stalls after its first text while
sending Anthropic's `event: ping` (hunt11 h112).

litellm's only timeout was httpx's per read, which every ping resets: with `timeout_s: 2`, a
stream held its client, the upstream connection and the budget reservation for as long as the
upstream kept pinging (30 s measured here; for ever if it never stops). As on the OpenAI-shape
path, each next chunk is now due `timeout_s` after it is asked for: the client gets what was
said and then an in-band 504 `upstream_timeout`, the ledger row bills what was delivered, and
the deployment's failure is counted.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    ledger_row,
    sdk_client,
    sql,
    wait_for,
)

pytestmark = pytest.mark.integration

TIMEOUT_S = 2
# Longer than the SDK's own 30 s read timeout (sdk_client): on the old code the client gave
# up first (an APITimeoutError and a 499 row), never the gateway.
STALL_S = 60
DEPLOYMENT = "claude-stall"


@pytest.fixture(scope="module")
def rig(session_tmp: Path, pg_url: str) -> Iterator[tuple[GatewayServer, MockUpstreamServer]]:
    tmp = session_tmp / "litellm-stall"
    tmp.mkdir(exist_ok=True)
    mock = MockUpstreamServer(tmp)
    dep = {
        "name": DEPLOYMENT,
        "model": "claude-stall",
        "provider": "anthropic",
        "upstream_model": "claude-3-5-haiku-20241022",
        "api_base": mock.base,
        "api_key_env": "MOCK_PROVIDER_KEY",
        "input_cost_per_mtok": 0.8,
        "output_cost_per_mtok": 4,
        "timeout_s": TIMEOUT_S,
    }
    gw: GatewayServer | None = None
    try:
        gw = GatewayServer(tmp, pg_url, [dep])
        yield gw, mock
    finally:
        if gw is not None:
            gw.stop()
        mock.stop()


def failures(gw: GatewayServer) -> float:
    text = httpx.get(gw.base + "/metrics", timeout=10).text
    pattern = (
        r"thriftgate_route_attempt_failures_total\{deployment=\""
        + DEPLOYMENT
        + r"\",status=\"504\"\} ([0-9.e+]+)"
    )
    found = re.search(pattern, text)
    return float(found[1]) if found else 0.0


def reserved(gw: GatewayServer, tenant_id: str) -> bool:
    query = "SELECT reserved_usd, reserved_prev_usd FROM budget_counters WHERE tenant_id = $1"
    return any(
        r["reserved_usd"] or r["reserved_prev_usd"] for r in sql(gw.db_url, query, tenant_id)
    )


def test_a_pinging_stall_mid_stream_ends_in_an_upstream_timeout(
    rig: tuple[GatewayServer, MockUpstreamServer],
) -> None:
    gw, mock = rig
    mock.control(stall_s=STALL_S, stall_ping_s=0.3)
    tenant_id, key = gw.new_tenant(budget_usd=5)
    before = failures(gw)
    rid = "stall-" + uuid.uuid4().hex
    client = sdk_client(gw, key)
    said: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        stream = client.chat.completions.create(
            model="claude-stall",
            max_tokens=50,
            stream=True,
            messages=[{"role": "user", "content": "one two three four five"}],
            extra_headers={"x-request-id": rid},
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                said.append(chunk.choices[0].delta.content)
    # the gateway's in-band error event, not the SDK giving up on a silent stream
    assert not isinstance(caught.value, openai.APITimeoutError), caught.value
    assert DEPLOYMENT in str(caught.value), caught.value
    assert said == ["Claude "]  # what came before the stall reached the client

    row = ledger_row(gw, rid)
    assert row["status_code"] == 504
    assert row["error_code"] == "upstream_timeout"
    assert row["completion_tokens"] > 0  # the text delivered is billed
    assert wait_for(lambda: failures(gw) > before), "the deployment's failure was not counted"
    assert wait_for(lambda: not reserved(gw, tenant_id)), "the reservation was not released"


def test_a_stream_with_pings_shorter_than_the_timeout_is_whole(
    rig: tuple[GatewayServer, MockUpstreamServer],
) -> None:
    gw, mock = rig
    mock.control(stall_s=TIMEOUT_S / 4, stall_ping_s=0.1)
    _, key = gw.new_tenant()
    stream = sdk_client(gw, key).chat.completions.create(
        model="claude-stall",
        max_tokens=50,
        stream=True,
        messages=[{"role": "user", "content": "one two three"}],
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.strip() == "Claude echo: one two three"


def test_a_non_stream_answer_trickled_past_the_timeout_is_an_upstream_timeout(
    rig: tuple[GatewayServer, MockUpstreamServer],
) -> None:
    """Headers at once, then a space now and then before the JSON (as proxies keep a long
    answer's connection alive): httpx's per-read timeout never fired, so the answer took as
    long as the upstream liked; the attempt now has `timeout_s` in all, as on the
    OpenAI-shape path."""
    gw, mock = rig
    mock.control(stall_s=STALL_S, stall_ping_s=0.3)
    _, key = gw.new_tenant()
    rid = "trickled-" + uuid.uuid4().hex
    with pytest.raises(openai.APIStatusError) as caught:
        sdk_client(gw, key).chat.completions.create(
            model="claude-stall",
            max_tokens=50,
            messages=[{"role": "user", "content": "one two three"}],
            extra_headers={"x-request-id": rid},
        )
    assert caught.value.status_code == 504, caught.value
    assert DEPLOYMENT in str(caught.value)
    row = ledger_row(gw, rid)
    assert row["status_code"] == 504
    assert row["error_code"] == "upstream_timeout"
