"""Local stand-ins for provider APIs that litellm translates (Gemini's generateContent, Azure
OpenAI's deployments), answering in each API's documented shapes, served from a thread.

What a request gets is picked by a word in its prompt: "CUT" (a Gemini stream that ends before
Gemini says why it stopped); anything else is answered whole. The Azure fake refuses
`stream_options` on api-versions before 2024-09-01-preview, as Azure does.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from aiohttp import web

from tests.support.servers import free_port

GEMINI_USAGE = {"promptTokenCount": 8, "candidatesTokenCount": 4, "totalTokenCount": 12}
AZURE_USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}


def _gemini_chunk(text: str, finish: str | None = None) -> bytes:
    candidate: dict[str, Any] = {
        "index": 0,
        "content": {"role": "model", "parts": [{"text": text}]},
    }
    if finish:
        candidate["finishReason"] = finish
    body = {"candidates": [candidate], "usageMetadata": GEMINI_USAGE, "responseId": "r-1"}
    return b"data: " + json.dumps(body).encode() + b"\r\n\r\n"


async def _gemini_stream(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(_gemini_chunk("Paris is "))
    if "CUT" not in json.dumps(body):
        await resp.write(_gemini_chunk("the capital.", "STOP"))
    await resp.write_eof()
    return resp


def _azure_chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"id": "c-1", "object": "chat.completion.chunk", "created": 0, "model": "gpt-4o",
            "choices": [choice]}  # fmt: skip
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class ProviderFakes:
    """Gemini under `gemini_base`, Azure OpenAI under `azure_base`; `.requests` records the
    Azure requests' api-version and whether they carried stream_options."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        self.gemini_base = self.root + "/v1beta"
        self.azure_base = self.root
        self.requests: list[tuple[str, bool]] = []
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        started.wait(10)

    async def _azure(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        version = request.query.get("api-version", "")
        self.requests.append((version, "stream_options" in body))
        if "stream_options" in body and version < "2024-09-01-preview":
            said = "Unrecognized request argument supplied: stream_options"
            error = {"message": said, "type": "invalid_request_error", "param": None, "code": None}
            return web.json_response({"error": error}, status=400)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(_azure_chunk({"role": "assistant", "content": "Hi "}))
        await resp.write(_azure_chunk({"content": "there"}))
        await resp.write(_azure_chunk({}, "stop"))
        if body.get("stream_options", {}).get("include_usage"):
            usage = {"id": "c-1", "object": "chat.completion.chunk", "created": 0,
                     "model": "gpt-4o", "choices": [], "usage": AZURE_USAGE}  # fmt: skip
            await resp.write(b"data: " + json.dumps(usage).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/v1beta/models/{model}:streamGenerateContent", _gemini_stream)
        app.router.add_post("/openai/deployments/{name}/chat/completions", self._azure)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        started.set()
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
