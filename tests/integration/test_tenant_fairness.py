"""Noisy neighbours: one tenant's flood must not take the gateway from another (hunt11 h116).

Real gateway process, real Postgres, the mock upstream, the official SDK. A tenant may be capped
in requests in flight (`max_concurrent_requests` flag): what is over the cap is a 429 at once,
while other tenants are served. Answers to a tenant with RPM/TPM limits carry OpenAI's
`x-ratelimit-*` headers, so clients that pace themselves on them (as they do on OpenAI) can.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    sdk_client,
    wait_for,
)

DURATION = re.compile(r"^(\d+ms|(\d+m)?\d+(\.\d+)?s)$")  # OpenAI's: 20ms, 1.5s, 6m0s


def ask(client: openai.OpenAI) -> Any:
    return client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=10
    )


def test_answers_carry_openais_rate_limit_headers(gateway: GatewayServer) -> None:
    _, key = gateway.new_tenant(rpm=3, tpm=100_000)
    client = sdk_client(gateway, key)
    first = ask(client)
    h = first.headers
    assert h["x-ratelimit-limit-requests"] == "3"
    assert h["x-ratelimit-remaining-requests"] == "2"
    assert h["x-ratelimit-limit-tokens"] == "100000"
    assert 99_000 < int(h["x-ratelimit-remaining-tokens"]) < 100_000  # the estimate charged
    assert DURATION.match(h["x-ratelimit-reset-requests"]), h["x-ratelimit-reset-requests"]
    assert DURATION.match(h["x-ratelimit-reset-tokens"]), h["x-ratelimit-reset-tokens"]
    ask(client)
    assert ask(client).headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as refused:
        ask(client)
    h = refused.value.response.headers
    assert h["x-ratelimit-limit-requests"] == "3"
    assert h["x-ratelimit-remaining-requests"] == "0"
    assert int(h["retry-after"]) >= 1
    assert DURATION.match(h["x-ratelimit-reset-requests"])


def test_a_tenant_without_limits_gets_no_rate_limit_headers(gateway: GatewayServer) -> None:
    _, key = gateway.new_tenant()
    assert not [k for k in ask(sdk_client(gateway, key)).headers if k.startswith("x-ratelimit")]


@pytest.fixture
def slow_streams(mock_upstream: MockUpstreamServer) -> Iterator[None]:
    """Streams hold their first token for 20 s (the role chunk, and the headers, go at once)."""
    mock_upstream.control(first_token_ms=20_000)
    yield
    mock_upstream.control(first_token_ms=0)


def open_stream(gateway: GatewayServer, key: str) -> tuple[httpx.Client, httpx.Response]:
    client = httpx.Client(timeout=60)
    request = client.build_request(
        "POST",
        gateway.url + "/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "a long answer please"}],
            "stream": True,
        },
    )
    response = client.send(request, stream=True)
    assert response.status_code == 200, response.read()
    return client, response


def test_a_tenant_over_its_cap_in_flight_gets_a_429_while_others_are_served(
    gateway: GatewayServer, slow_streams: None
) -> None:
    _, flood_key = gateway.new_tenant(flags={"max_concurrent_requests": 2})
    _, other_key = gateway.new_tenant()
    held = [open_stream(gateway, flood_key) for _ in range(2)]
    try:
        with pytest.raises(openai.RateLimitError) as refused:
            ask(sdk_client(gateway, flood_key))
        error = refused.value.body
        assert isinstance(error, dict) and error["code"] == "rate_limit_exceeded"
        assert "max_concurrent_requests" in error["message"]
        assert refused.value.response.headers["retry-after"] == "1"
        assert ask(sdk_client(gateway, other_key)).http_response.status_code == 200
    finally:
        for client, response in held:
            response.close()
            client.close()

    def admitted() -> bool:  # the slots come back once the gateway sees the streams closed
        try:
            return bool(ask(sdk_client(gateway, flood_key)).http_response.status_code == 200)
        except openai.RateLimitError:
            return False

    assert wait_for(admitted, timeout_s=15, interval_s=0.2)


def test_the_cap_in_flight_is_checked_when_set(gateway: GatewayServer) -> None:
    tid, _ = gateway.new_tenant()
    for bad in (0, -1, 2.5, "8", True):
        r = gateway.admin(
            "PATCH", f"/admin/tenants/{tid}", json={"flags": {"max_concurrent_requests": bad}}
        )
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["param"] == "flags.max_concurrent_requests"
    r = gateway.admin(
        "PATCH", f"/admin/tenants/{tid}", json={"flags": {"max_concurrent_requests": 8}}
    )
    assert r.status_code == 200 and r.json()["flags"] == {"max_concurrent_requests": 8}


def test_a_refusal_after_the_rate_limits_carries_their_headers(gateway: GatewayServer) -> None:
    """A budget refusal (or an upstream error) after the request was admitted by the limits."""
    _, key = gateway.new_tenant(rpm=50, budget_usd=0)
    with pytest.raises(openai.RateLimitError) as refused:
        ask(sdk_client(gateway, key))
    assert refused.value.code == "insufficient_quota"
    h = refused.value.response.headers
    assert h["x-ratelimit-limit-requests"] == "50"
    assert h["x-ratelimit-remaining-requests"] == "49"


def cli(gateway: GatewayServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "THRIFTGATE_DATABASE_URL": gateway.db_url}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_cli_changes_a_running_tenants_rate_limits(gateway: GatewayServer) -> None:
    """At 3 a.m. a batch job floods the gateway: `thriftgate tenant update` caps it (there was
    no CLI command to change a tenant after `tenant create`)."""
    tid, key = gateway.new_tenant(rpm=100, flags={"cache": False})
    client = sdk_client(gateway, key)
    assert ask(client).headers["x-ratelimit-limit-requests"] == "100"
    out = cli(gateway, "tenant", "update", tid, "--rpm", "40", "--max-concurrent", "3")
    assert out.returncode == 0, out.stderr
    changed = json.loads(out.stdout)
    assert changed["rpm"] == 40
    assert changed["flags"] == {"cache": False, "max_concurrent_requests": 3}  # others kept
    seen = wait_for(lambda: ask(client).headers["x-ratelimit-limit-requests"] == "40")
    assert seen, "the running gateway kept the old limit"
    out = cli(gateway, "tenant", "update", tid, "--rpm", "0", "--max-concurrent", "0")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rpm"] is None
    assert json.loads(out.stdout)["flags"] == {"cache": False}
    bad = cli(gateway, "tenant", "update", tid, "--tpm", "99999999999")
    assert bad.returncode != 0 and bad.stderr.startswith("error: --tpm"), bad.stderr
