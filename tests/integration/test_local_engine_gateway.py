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
from tests.support.servers import GatewayServer

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
    with pytest.raises(InvalidRequest):  # raised before the first chunk
        agen = provider.stream(
            {"messages": [{"role": "user", "content": "x"}], "n": 3},
            dep,
            endpoint="chat/completions",
            timeout_s=30,
        )
        await anext(agen)
    with pytest.raises(InvalidRequest):
        await provider.embed({"input": "x"}, dep, timeout_s=5)
    with pytest.raises(UpstreamError):
        await provider.complete(
            {"messages": [{"role": "user", "content": "x"}]},
            local_dep("bad", speculative="warp-drive"),
            endpoint="chat/completions",
            timeout_s=30,
        )


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
