"""A stream the client closes mid-way (a chat UI's "stop" button) is settled synchronously; its
TPM charge (prompt estimate + max_tokens) must become what was used there too, or a few
stopped answers lock the tenant out for a minute having used a few tokens (hunt9 h2)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from gateway.errors import RateLimited
from gateway.pipeline.context import Reply, RequestContext, TenantInfo
from gateway.pipeline.limits import RateLimiter, RateLimitStage
from gateway.pipeline.pipeline import Pipeline
from tests.support.context import bare_context


class Endless:
    async def dispatch(self, ctx: RequestContext) -> Reply:
        return Reply(chunks=self._chunks())

    async def _chunks(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            yield {"choices": [{"index": 0, "delta": {"content": "word "}}]}
            await asyncio.sleep(0)


def request() -> RequestContext:
    tenant = TenantInfo(id="t", name="t", key_id=None, tpm=1000, budget_usd=Decimal(1))
    body = {"model": "m", "max_tokens": 900, "messages": [{"role": "user", "content": "hi"}]}
    return bare_context(body=body, tenant=tenant, prompt_tokens_estimate=10, stream=True)


def test_a_stream_stopped_by_its_client_is_charged_what_it_used() -> None:
    limiter = RateLimiter()
    pipeline = Pipeline(
        catalog=None,  # type: ignore[arg-type]
        file_config=None,  # type: ignore[arg-type]
        stages=[RateLimitStage(limiter)],
        dispatcher=Endless(),  # type: ignore[arg-type]
    )

    async def stopped_after_three_chunks() -> None:
        reply = await pipeline.run(request())
        assert reply.chunks is not None
        stream = reply.chunks
        for _ in range(3):
            await stream.__anext__()
        await stream.aclose()  # the client went away

    asyncio.run(stopped_after_three_chunks())
    # ~10 tokens used of the 910 charged: another 910 fits under 1,000
    limiter.check("t", rpm=None, tpm=1000, tokens=910)
    with pytest.raises(RateLimited):
        limiter.check("t", rpm=None, tpm=1000, tokens=910)
