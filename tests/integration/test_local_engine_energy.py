"""GPU energy per request, end to end: engine -> `usage.energy_joules` -> gateway -> ledger row.

This host has no GPU, so the engine's meter is a double of the hardware counter (a GPU drawing a
constant 300 W, read through the same `EnergySource` contract as NVML); the attribution in the
decode loop, the usage field, the gateway's parsing and the Postgres ledger write are real.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest

from local_engine.backends.transformers_backend import TransformersBackend
from local_engine.config import EngineConfig, SpeculativeConfig
from tests.integration.test_local_engine_server import EngineServer
from tests.support.energy import ConstantPowerCounter
from tests.support.servers import GatewayServer, sql, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.integration]

MODEL = "smollm2-135m"
WATTS = 300.0
ASK = [{"role": "user", "content": "Count from one to ten in words."}]


@pytest.fixture(scope="module")
def meter() -> ConstantPowerCounter:
    return ConstantPowerCounter(WATTS)


@pytest.fixture(scope="module")
def engine(meter: ConstantPowerCounter) -> Iterator[EngineServer]:
    config = EngineConfig(dtype="float32", speculative=SpeculativeConfig(method="ngram"))
    server = EngineServer(TransformersBackend(config, meter))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(engine: EngineServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=engine.base + "/v1", api_key="unused", max_retries=0, timeout=120)


def joules(usage: Any) -> float:
    value = (usage.model_extra or {}).get("energy_joules")
    assert isinstance(value, float), usage
    return value


def test_each_answer_reports_the_energy_it_was_charged(client: openai.OpenAI) -> None:
    started = time.monotonic()
    reply = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=12, temperature=0)
    wall_s = time.monotonic() - started
    assert reply.usage is not None
    # Alone on the engine it is charged its own decode time at 300 W: more than nothing, never
    # more than the meter counted while the client waited.
    assert 0 < joules(reply.usage) <= WATTS * wall_s

    stream = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and joules(chunks[-1].usage) > 0
    assert all(c.usage is None for c in chunks[:-1])

    # Ended by a stop string: the engine drops the row a step later and still reports it.
    stopped = client.chat.completions.create(
        model=MODEL, messages=ASK, max_tokens=40, temperature=0, stop=["four", "Four", "4"]
    )
    assert stopped.usage is not None and joules(stopped.usage) > 0


def test_concurrent_requests_share_the_energy_without_double_counting(
    client: openai.OpenAI, meter: ConstantPowerCounter
) -> None:
    def ask(n: int) -> float:
        reply = client.chat.completions.create(
            model=MODEL, messages=ASK, max_tokens=6 + 4 * n, temperature=0
        )
        assert reply.usage is not None
        return joules(reply.usage)

    before = meter.read().joules
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(ask, range(4)))
    after = meter.read().joules
    assert before is not None and after is not None
    assert all(j > 0 for j in got)
    assert sum(got) <= after - before  # shares of one meter, each joule charged at most once


# -- through the gateway, into the ledger ------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(session_tmp: Path, pg_url: str, engine: EngineServer) -> Iterator[GatewayServer]:
    dep = {
        "name": "gpu-engine",
        "model": MODEL,
        "provider": "openai_compatible",
        "api_base": engine.base + "/v1",
        "input_cost_per_mtok": 0,
        "output_cost_per_mtok": 0,
        "hardware_usd_per_hour": 2.5,  # a local engine over HTTP: priced by its hardware
    }
    server = GatewayServer(session_tmp, pg_url, [dep])
    yield server
    server.stop()


def ledger_energy(pg_url: str, request_id: str) -> Any:
    rows = wait_for(
        lambda: sql(
            pg_url,
            "SELECT deployment, energy_joules FROM usage_ledger WHERE request_id = $1",
            request_id,
        ),
        timeout_s=30,
    )
    assert rows, f"no ledger row for {request_id}"
    return rows[0]["energy_joules"]


def test_the_gateway_writes_the_engines_energy_into_the_ledger(
    gateway: GatewayServer, pg_url: str
) -> None:
    _, key = gateway.new_tenant()
    gw = openai.OpenAI(base_url=gateway.url, api_key=key, max_retries=0, timeout=120)
    reply = gw.chat.completions.create(
        model=MODEL,
        messages=ASK,
        max_tokens=8,
        temperature=0,
        extra_headers={"x-request-id": "energy-json", "cache-control": "no-store"},
    )
    assert reply.usage is not None
    assert ledger_energy(pg_url, "energy-json") == pytest.approx(joules(reply.usage))
    [row] = sql(pg_url, "SELECT deployment FROM usage_ledger WHERE request_id = 'energy-json'")
    assert row["deployment"] == "gpu-engine"

    stream = gw.chat.completions.create(
        model=MODEL,
        messages=ASK,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-request-id": "energy-sse", "cache-control": "no-store"},
    )
    last = list(stream)[-1]
    assert last.usage is not None
    assert ledger_energy(pg_url, "energy-sse") == pytest.approx(joules(last.usage))

    # The client did not ask for usage: it gets none, the ledger still gets the energy.
    quiet = gw.chat.completions.create(
        model=MODEL,
        messages=ASK,
        max_tokens=8,
        temperature=0,
        stream=True,
        extra_headers={"x-request-id": "energy-sse-quiet", "cache-control": "no-store"},
    )
    assert all(c.usage is None for c in quiet)
    assert ledger_energy(pg_url, "energy-sse-quiet") > 0


def test_a_cache_hit_reports_and_records_no_energy(gateway: GatewayServer, pg_url: str) -> None:
    _, key = gateway.new_tenant()
    gw = openai.OpenAI(base_url=gateway.url, api_key=key, max_retries=0, timeout=120)
    ask = [{"role": "user", "content": "Name one colour."}]
    first = gw.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=ask,
        max_tokens=4,
        temperature=0,
        extra_headers={"x-request-id": "energy-miss"},
    )
    assert first.headers["x-thriftgate-cache"] == "miss"
    assert joules(first.parse().usage) > 0
    hit = gw.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=ask,
        max_tokens=4,
        temperature=0,
        extra_headers={"x-request-id": "energy-hit"},
    )
    assert hit.headers["x-thriftgate-cache"] == "hit-exact"
    usage = hit.parse().usage
    assert usage is not None and "energy_joules" not in (usage.model_extra or {})
    assert ledger_energy(pg_url, "energy-miss") > 0
    assert ledger_energy(pg_url, "energy-hit") is None
