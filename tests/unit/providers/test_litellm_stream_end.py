"""Where a stream through litellm (Anthropic's Messages API here) counts as complete.

litellm ends every stream with a finish chunk, inventing `finish_reason: "stop"` when the
provider never said why it stopped; a stream cut mid-answer must still end in an error, never
pass for a complete answer (it would be billed as one and cached). The upstream is a real
aiohttp server in-process that sends exactly the events a test gives, then ends the body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from gateway.errors import UpstreamError
from gateway.providers.litellm_adapter import LiteLLMProvider
from tests.unit.providers.conftest import ServeMessages, anthropic_deployment, sse_handler

KEY_ENV = "TG_TEST_LITELLM_STREAM_END_KEY"
# as the pipeline sends a stream: with stream_options (the adapter then asks litellm for usage)
CHAT = {
    "messages": [{"role": "user", "content": "hello"}],
    "max_tokens": 16,
    "stream_options": {"include_usage": True},
}
Serve = Callable[..., Awaitable[str]]


def sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


START = sse(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 1},
        },
    },
)
BLOCK = sse(
    "content_block_start",
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
)


def text(t: str) -> bytes:
    delta = {"type": "text_delta", "text": t}
    return sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})


END = [
    sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
    sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 2},
        },
    ),
    sse("message_stop", {"type": "message_stop"}),
]


@pytest.fixture
def serve(serve_messages: ServeMessages) -> Serve:
    """Start an upstream answering every /v1/messages with `parts`; `stall_s` waits that long
    before ending the body (a stalled stream)."""

    async def start(parts: list[bytes], stall_s: float = 0.0) -> str:
        return await serve_messages(sse_handler(parts, stall_s))

    return start


async def chunks(base: str, timeout_s: float = 5) -> list[dict[str, Any]]:
    dep = anthropic_deployment(base, KEY_ENV)
    stream = LiteLLMProvider().stream(CHAT, dep, endpoint="chat/completions", timeout_s=timeout_s)
    return [c async for c in stream]


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-ant-test")


async def test_a_complete_stream_ends_with_the_providers_finish_and_usage(serve: Serve) -> None:
    out = await chunks(await serve([START, BLOCK, text("Hello"), text(" there"), *END]))
    finishes = [c["choices"][0].get("finish_reason") for c in out if c.get("choices")]
    assert finishes[-1] == "stop"
    assert out[-1]["choices"] == [] and out[-1]["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize("sent", [4, 5])  # cut after the text; after the block's end
async def test_a_stream_cut_before_the_providers_stop_is_an_error(serve: Serve, sent: int) -> None:
    parts = [START, BLOCK, text("Hello"), text(" from"), *END][:sent]
    base = await serve(parts)
    got: list[dict[str, Any]] = []
    with pytest.raises(UpstreamError) as info:
        async for c in LiteLLMProvider().stream(
            CHAT, anthropic_deployment(base, KEY_ENV), endpoint="chat/completions", timeout_s=5
        ):
            got.append(c)
    assert "ended the stream early" in info.value.message
    assert not any(c.get("choices") and c["choices"][0].get("finish_reason") for c in got)


async def test_the_stop_reason_without_message_stop_is_complete(serve: Serve) -> None:
    # message_delta carries the provider's stop_reason: the answer is whole
    out = await chunks(await serve([START, BLOCK, text("Hello"), *END[:2]]))
    assert [c["choices"][0].get("finish_reason") for c in out if c.get("choices")][-1] == "stop"
