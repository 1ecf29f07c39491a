"""Energy for requests passed through to vLLM, where our server sees only what vLLM returns.

Work (see `energy_attribution`): one unit per streamed chunk that carries output (vLLM sends one
per engine step per request); a non-streamed request records its completion tokens when its
answer arrives, so under concurrent load its share of the earlier intervals goes to the
streams that ran beside it (a known bias of measuring from outside vLLM's scheduler).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable

from local_engine.energy_attribution import EnergyAttributor
from local_engine.protocol import Json, add_energy


def _has_output(item: Json) -> bool:
    for choice in item.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if choice.get("text") or (isinstance(delta, dict) and delta.get("content")):
            return True
    return False


def _completion_tokens(body: Json) -> int:
    usage = body.get("usage")
    n = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 0


async def metered_response(energy: EnergyAttributor, answer: Awaitable[Json]) -> Json:
    """Await a non-streamed answer; add `usage.energy_joules` when energy is measured."""
    account = energy.open()
    joules: float | None = None
    try:
        body = await answer
        energy.add_work(account, _completion_tokens(body))
    finally:
        joules = energy.close_one(account)
    return add_energy(body, joules)


async def metered_chunks(
    energy: EnergyAttributor, chunks: AsyncGenerator[Json, None]
) -> AsyncGenerator[Json, None]:
    """Pass chunks through, charging the request per output chunk; the final usage chunk
    (no choices) gets `usage.energy_joules` when energy is measured. Closing this closes
    `chunks` at once (for vLLM: drops the connection, which aborts the request there)."""
    account = energy.open()
    try:
        async for item in chunks:
            if account is not None:
                if _has_output(item):
                    energy.add_work(account, 1)
                    energy.settle_if_due()
                if isinstance(item.get("usage"), dict) and not item.get("choices"):
                    add_energy(item, energy.close_one(account))
                    account = None
            yield item
    finally:
        energy.close_one(account)  # a stream that ended early: stop charging it
        await chunks.aclose()
