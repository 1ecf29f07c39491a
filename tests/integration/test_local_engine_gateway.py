"""The local engine behind the gateway: `LocalProvider` in-process, and a gateway routing to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import openai
import pytest

from gateway.errors import InvalidRequest, UpstreamError
from gateway.providers.local import LocalProvider
from gateway.routing.catalog import Catalog, Deployment
from gateway.settings import DeploymentConfig
from tests.support.energy import ConstantPowerCounter
from tests.support.servers import GatewayServer, sql, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.integration]

OPTIONS = {"dtype": "float32", "speculative": "ngram"}


def local_dep(name: str = "local-smol", **options: object) -> Deployment:
    cfg = DeploymentConfig(
        name=name,
        model="smollm2-135m",
        provider="local",
        input_cost_per_mtok=Decimal(0),
        output_cost_per_mtok=Decimal(0),
        hardware_usd_per_hour=Decimal("0.20"),
        options={**OPTIONS, **options},
    )
    return Catalog.build([cfg]).deployments[name]


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[LocalProvider]:
    p = LocalProvider()
    yield p
    await p.aclose()


async def test_complete_and_stream_in_process(provider: LocalProvider) -> None:
    dep = local_dep()
    body = {
        "model": "whatever",
        "messages": [{"role": "user", "content": "Say hi."}],
        "max_tokens": 5,
        "temperature": 0,
    }
    reply = await provider.complete(body, dep, endpoint="chat/completions", timeout_s=120)
    assert (
        reply["usage"]["completion_tokens"] == 5 or reply["choices"][0]["finish_reason"] == "stop"
    )
    assert reply["model"] == "smollm2-135m"

    chunks = [
        c
        async for c in provider.stream(
            {**body, "stream": True, "stream_options": {"include_usage": True}},
            dep,
            endpoint="chat/completions",
            timeout_s=120,
        )
    ]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == reply["choices"][0]["message"]["content"]
    assert chunks[-1]["usage"] == reply["usage"]

    stats = provider.stats(dep)
    assert stats is not None and stats.requests_total >= 2
    assert stats.hardware_usd_per_hour == Decimal("0.20")
    assert stats.tokens_per_s and stats.cost_per_mtok_usd is not None


async def test_errors_are_gateway_errors(provider: LocalProvider) -> None:
    dep = local_dep()
    with pytest.raises(InvalidRequest):
        await provider.complete({"messages": []}, dep, endpoint="chat/completions", timeout_s=30)
    with pytest.raises(InvalidRequest) as err:  # raised before the first chunk
        agen = provider.stream(
            {"messages": [{"role": "user", "content": "x"}], "n": 3},
            dep,
            endpoint="chat/completions",
            timeout_s=30,
        )
        await anext(agen)
    # kept: it tells dispatch that another deployment of the group may serve the request
    assert err.value.code == "unsupported_parameter" and err.value.param == "n"
    with pytest.raises(InvalidRequest):
        await provider.embed({"input": "x"}, dep, timeout_s=5)
    with pytest.raises(UpstreamError):
        await provider.complete(
            {"messages": [{"role": "user", "content": "x"}]},
            local_dep("bad", speculative="warp-drive"),
            endpoint="chat/completions",
            timeout_s=30,
        )


async def test_energy_per_answer_where_measured_and_absent_where_not(
    provider: LocalProvider,
) -> None:
    body = {
        "messages": [{"role": "user", "content": "Say hi."}],
        "max_tokens": 4,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    dep = local_dep()
    # This host: no GPU, no NVML. The usage says nothing about energy rather than a guess.
    reply = await provider.complete(
        {**body, "stream": False}, dep, endpoint="chat/completions", timeout_s=120
    )
    assert "energy_joules" not in reply["usage"]
    # The same engine with a double of the GPU's energy counter: each answer reports its share.
    metered = LocalProvider(meter_factory=lambda: ConstantPowerCounter(300.0))
    try:
        reply = await metered.complete(
            {**body, "stream": False}, dep, endpoint="chat/completions", timeout_s=120
        )
        assert reply["usage"]["energy_joules"] > 0
        chunks = [
            c async for c in metered.stream(body, dep, endpoint="chat/completions", timeout_s=120)
        ]
        assert chunks[-1]["usage"]["energy_joules"] > 0
    finally:
        await metered.aclose()


@pytest.fixture(scope="module")
def local_gateway(session_tmp: Path, pg_url: str) -> Iterator[GatewayServer]:
    dep = {
        "name": "local-smol",
        "model": "smollm2-135m",
        "provider": "local",
        "input_cost_per_mtok": 0,
        "output_cost_per_mtok": 0,
        "hardware_usd_per_hour": 0.2,
        "options": OPTIONS,
    }
    server = GatewayServer(session_tmp, pg_url, [dep])
    yield server
    server.stop()


def test_gateway_routes_to_the_local_engine(local_gateway: GatewayServer) -> None:
    _, key = local_gateway.new_tenant()
    client = openai.OpenAI(base_url=local_gateway.url, api_key=key, max_retries=0, timeout=120)
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Say hi."}],
        max_tokens=4,
        temperature=0,
    )
    reply = raw.parse()
    assert raw.headers["x-thriftgate-deployment"] == "local-smol"
    assert reply.usage is not None and reply.usage.completion_tokens <= 4
    stream = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Say hi."}],
        max_tokens=4,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content


def test_on_a_cpu_host_the_ledger_row_has_no_energy(
    local_gateway: GatewayServer, pg_url: str
) -> None:
    _, key = local_gateway.new_tenant()
    client = openai.OpenAI(base_url=local_gateway.url, api_key=key, max_retries=0, timeout=120)
    reply = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=4,
        temperature=0,
        extra_headers={"x-request-id": "cpu-energy", "cache-control": "no-store"},
    )
    assert reply.usage is not None and "energy_joules" not in (reply.usage.model_extra or {})
    rows = wait_for(
        lambda: sql(
            pg_url,
            "SELECT deployment, energy_joules FROM usage_ledger WHERE request_id = 'cpu-energy'",
        ),
        timeout_s=30,
    )
    assert rows and rows[0]["deployment"] == "local-smol"
    assert rows[0]["energy_joules"] is None  # not measured: NULL, not 0
