"""vLLM pass-through: energy charged per streamed output chunk, reported in the usage object."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import pytest

from local_engine.backends.passthrough_energy import metered_chunks, metered_response
from local_engine.energy import EnergyMeter
from local_engine.energy_attribution import EnergyAttributor
from local_engine.protocol import usage
from tests.support.energy import ManualCounter

USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def chunk(text: str) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}}],
    }


async def vllm_stream(counter: ManualCounter, joules_per_chunk: float) -> AsyncGenerator[Any]:
    """What vLLM streams, with the GPU counter moving as each step runs."""
    yield {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "a"}}]}
    for text in ("Hel", "lo", "!"):
        counter.joules += joules_per_chunk
        yield chunk(text)
    yield {"object": "chat.completion.chunk", "choices": [], "usage": dict(USAGE)}


def test_usage_has_energy_only_when_measured() -> None:
    assert "energy_joules" not in usage(1, 2)
    assert usage(1, 2, 0.1234567891)["energy_joules"] == 0.123457


async def test_stream_gets_energy_in_its_final_usage_chunk() -> None:
    counter = ManualCounter(0.0)
    energy = EnergyAttributor(counter, min_interval_s=0.0)
    out = [c async for c in metered_chunks(energy, vllm_stream(counter, 5.0))]
    assert out[-1]["usage"] == {**USAGE, "energy_joules": 15.0}
    assert all("usage" not in c for c in out[:-1])


async def test_two_streams_side_by_side_split_by_chunks_streamed() -> None:
    """Each vLLM step costs 10 J and yields a chunk to each stream; reads every 5 steps."""
    counter, now = ManualCounter(0.0), [0.0]
    energy = EnergyAttributor(counter, min_interval_s=0.05, clock=lambda: now[0])

    async def steps(n: int) -> AsyncGenerator[Any]:
        yield {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}}]}
        for _ in range(n):
            yield chunk("x")
        yield {"object": "chat.completion.chunk", "choices": [], "usage": dict(USAGE)}

    a, b = metered_chunks(energy, steps(20)), metered_chunks(energy, steps(10))
    await anext(a)  # both requests are in (the role chunk) before vLLM's first step
    await anext(b)
    for step in range(20):
        counter.joules += 10.0
        now[0] += 0.01
        await anext(a)
        if step < 10:
            await anext(b)
    last_b = await anext(b)  # b finished after 10 steps; a ran 10 more alone
    last_a = await anext(a)
    ja, jb = last_a["usage"]["energy_joules"], last_b["usage"]["energy_joules"]
    assert ja + jb == pytest.approx(200.0)  # every joule while they ran, once
    # Steps 1-10 shared (50 J each, give or take the one chunk an interval boundary
    # splits), steps 11-20 all a's.
    assert jb == pytest.approx(50.0, abs=10.0)


async def test_non_streamed_answer_gets_its_energy() -> None:
    counter = ManualCounter(100.0)
    energy = EnergyAttributor(counter)

    async def answer() -> dict[str, Any]:
        counter.joules += 42.0
        return {"choices": [], "usage": dict(USAGE)}

    body = await metered_response(energy, answer())
    assert body["usage"]["energy_joules"] == pytest.approx(42.0)


async def test_a_failed_request_stops_being_charged() -> None:
    counter = ManualCounter(0.0)
    energy = EnergyAttributor(counter)

    async def refused() -> dict[str, Any]:
        raise RuntimeError("vLLM said no")

    with pytest.raises(RuntimeError):
        await metered_response(energy, refused())
    closed = []

    async def upstream() -> AsyncGenerator[Any]:
        try:
            async for item in vllm_stream(counter, 1.0):
                yield item
        finally:
            closed.append(True)  # vLLM's connection: dropped, which aborts the request

    stream = metered_chunks(energy, upstream())
    await anext(stream)
    await stream.aclose()  # the client went away
    assert closed == [True]
    lone = energy.open()
    counter.joules += 9.0
    assert energy.close_one(lone) == pytest.approx(9.0)  # nobody else still shares it


async def test_no_meter_no_field() -> None:
    energy = EnergyAttributor(EnergyMeter())
    if energy.available:  # pragma: no cover - only where NVML is readable
        pytest.skip("NVML is readable here")
    counter = ManualCounter(0.0)
    out = [c async for c in metered_chunks(energy, vllm_stream(counter, 5.0))]
    assert out[-1]["usage"] == USAGE

    async def answer() -> dict[str, Any]:
        return {"choices": [], "usage": dict(USAGE)}

    assert (await metered_response(energy, answer()))["usage"] == USAGE
