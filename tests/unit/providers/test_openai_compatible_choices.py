"""A stream of several answers (`n` > 1, or a legacy completions request with several prompts)
is whole only when every one of them has finished: one cut after the first answer's finish
(EOF without [DONE], or a stall) was delivered, billed and cached as a complete 200 while the
other answers stopped mid-sentence; with one answer the same cut is an in-band error. The
upstream is a real aiohttp server in-process."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import UpstreamError
from gateway.providers.base import Endpoint
from gateway.providers.openai_compatible import OpenAICompatibleProvider
from tests.unit.providers.conftest import (
    ServeRoute,
    event,
    openai_compatible_deployment,
    sse_handler,
)

Json = dict[str, Any]


def chat(index: int, content: str | None = None, finish: str | None = None) -> Json:
    delta = {"content": content} if content is not None else {}
    choice = {"index": index, "delta": delta, "finish_reason": finish}
    return {"id": "c", "object": "chat.completion.chunk", "choices": [choice]}


def text(index: int, piece: str, finish: str | None = None) -> Json:
    choice = {"index": index, "text": piece, "finish_reason": finish}
    return {"id": "c", "object": "text_completion", "choices": [choice]}


dep = openai_compatible_deployment


async def read(
    serve_route: ServeRoute,
    provider: OpenAICompatibleProvider,
    endpoint: Endpoint,
    body: Json,
    chunks: list[Json],
    idle_s: float = 0.0,
) -> list[Json]:
    handler = sse_handler([event(c) for c in chunks], idle_s=idle_s)
    url = (await serve_route(f"/v1/{endpoint}", handler)).rstrip("/") + "/v1"
    stream = provider.stream(body, dep(url), endpoint=endpoint, timeout_s=0.5)
    return [c async for c in stream]


CUT_CHAT = [chat(0, "a"), chat(1, "b"), chat(0, None, "stop"), chat(1, " and")]
CUT_TEXT = [text(0, "a"), text(1, "b"), text(0, "", "stop"), text(1, " and")]
CHAT_BODY = {"messages": [{"role": "user", "content": "x"}], "n": 2}
TEXT_BODY = {"prompt": ["x", "y"]}


@pytest.mark.parametrize("idle_s", [0.0, 1.0], ids=["eof", "stall"])
@pytest.mark.parametrize(
    ("endpoint", "body", "chunks"),
    [("chat/completions", CHAT_BODY, CUT_CHAT), ("completions", TEXT_BODY, CUT_TEXT)],
    ids=["chat-n2", "two-prompts"],
)
async def test_a_stream_cut_before_every_answer_finished_is_short(
    serve_route: ServeRoute,
    provider: OpenAICompatibleProvider,
    endpoint: Endpoint,
    body: Json,
    chunks: list[Json],
    idle_s: float,
) -> None:
    with pytest.raises(UpstreamError):
        await read(serve_route, provider, endpoint, body, chunks, idle_s)


@pytest.mark.parametrize("idle_s", [0.0, 1.0], ids=["eof", "stall"])
async def test_every_answer_finished_is_whole_without_done(
    serve_route: ServeRoute, provider: OpenAICompatibleProvider, idle_s: float
) -> None:
    chunks = [*CUT_CHAT, chat(1, None, "stop")]
    got = await read(serve_route, provider, "chat/completions", CHAT_BODY, chunks, idle_s)
    assert len(got) == 5
