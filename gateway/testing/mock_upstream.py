"""A real, deterministic OpenAI-compatible (and Anthropic Messages) upstream for tests and benches.

    python -m gateway.testing.mock_upstream --port 9100 [--latency-ms 0] [--ms-per-token 0]

Behaviour can be changed at run time with `POST /_control` (JSON: latency_ms, ms_per_token,
fail_status, fail_next, fail_rate, fail_after_ms (a failure answers after this long), fail_code and
fail_param (the failure's OpenAI error code and param), fail_message (its message, default
"mock failure <status>"), fail_text (send that message as a plain-text body instead of JSON),
hang_s, first_token_ms (a chat stream's role-only opening chunk goes out at once, its first token
this much later), no_usage, truncate_stream, malformed_stream, omit_done (a chat stream ends at EOF
after its last chunk, with no `data: [DONE]`), reply, honor_max_tokens (cut a chat answer at
`max_tokens` words with finish_reason "length"), stall_s (an Anthropic stream stops for this long
after its first text delta, a non-stream Anthropic answer after its headers), stall_ping_s (and
meanwhile sends Anthropic's `event: ping`, or a space before the JSON, this often)) and inspected
with `GET /_requests` (the last bodies and auth headers it received).
Usage: prompt_tokens = words in all message contents + 3 per message; completion_tokens =
words in the reply; so tests can check the gateway's ledger against known numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import time
from collections import deque
from typing import Any

import orjson
from aiohttp import web

Json = dict[str, Any]


def _words(text: str) -> int:
    return len(text.split())


def _served_tier(asked: str) -> str:
    """The tier OpenAI says served a request: the one asked for, "default" for "auto"."""
    return "default" if asked == "auto" else asked


def _pieces(text: str) -> list[str]:
    """The text as the mock's tokens: words, each but the last with its trailing space."""
    pieces = [w + " " for w in text.split()] if text else []
    if pieces:
        pieces[-1] = pieces[-1].rstrip()
    return pieces


def _logprobs(body: Json, pieces: list[str]) -> Json:
    """A choice's `logprobs` field for `pieces` when the request asked for them: made-up but
    well-formed values, the alternatives numbered (`top_logprobs` of them)."""
    if not body.get("logprobs"):
        return {}
    top = body.get("top_logprobs") or 0

    def entry(token: str, logprob: float) -> Json:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    content = [
        {**entry(p, -0.25), "top_logprobs": [entry(f"alt{k}", -1.0 - k) for k in range(top)]}
        for p in pieces
    ]
    return {"logprobs": {"content": content, "refusal": None}}


def _content(msg: Json) -> str:
    c = msg.get("content")
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        return " ".join(p.get("text", "") for p in c if isinstance(p, dict))
    return ""


class MockUpstream:
    def __init__(self, **knobs: Any) -> None:
        self.knobs: Json = {
            "latency_ms": 0.0,
            "ms_per_token": 0.0,
            "fail_status": 503,
            "fail_next": 0,
            "fail_rate": 0.0,
            "fail_after_ms": 0.0,
            "fail_code": None,
            "fail_param": None,
            "fail_message": None,
            "fail_text": False,
            "hang_s": 0.0,
            "first_token_ms": 0.0,
            "no_usage": False,
            "truncate_stream": False,
            "malformed_stream": False,
            "omit_done": False,
            "reply": None,
            "honor_max_tokens": False,
            "stall_s": 0.0,
            "stall_ping_s": 0.0,
        }
        self.knobs.update({k: v for k, v in knobs.items() if v is not None})
        self.requests: deque[Json] = deque(maxlen=200)
        self.served = 0

    # -- helpers -----------------------------------------------------------------------
    def _reply_text(self, body: Json) -> str:
        if self.knobs["reply"]:
            return str(self.knobs["reply"])
        messages = body.get("messages") or []
        last = _content(messages[-1]) if messages else str(body.get("prompt", ""))
        if messages and messages[-1].get("role") == "tool":
            return f"The tool said: {last}"
        words = last.split()[:12]
        return "Echo: " + " ".join(words) if words else "Echo."

    def _prompt_tokens(self, body: Json) -> int:
        if "messages" in body:
            return sum(_words(_content(m)) + 3 for m in body["messages"] if isinstance(m, dict))
        prompt = body.get("prompt", "")
        return _words(prompt if isinstance(prompt, str) else " ".join(map(str, prompt)))

    async def _fault(self, request: web.Request, body: Json) -> web.Response | None:
        self.requests.append(
            {
                "path": request.path,
                "body": body,
                "authorization": request.headers.get("Authorization"),
                "x-api-key": request.headers.get("x-api-key"),
            }
        )
        if self.knobs["hang_s"]:
            await asyncio.sleep(float(self.knobs["hang_s"]))
        fail = False
        if self.knobs["fail_next"] > 0:
            self.knobs["fail_next"] -= 1
            fail = True
        elif self.knobs["fail_rate"] and random.random() < float(self.knobs["fail_rate"]):
            fail = True
        if fail:
            if self.knobs["fail_after_ms"]:
                await asyncio.sleep(float(self.knobs["fail_after_ms"]) / 1000.0)
            status = int(self.knobs["fail_status"])
            message = self.knobs["fail_message"] or f"mock failure {status}"
            if self.knobs["fail_text"]:
                return web.Response(text=message, status=status)
            return web.json_response(
                {
                    "error": {
                        "message": message,
                        "type": "server_error" if status >= 500 else "invalid_request_error",
                        "param": self.knobs["fail_param"],
                        "code": self.knobs["fail_code"],
                    }
                },
                status=status,
            )
        if self.knobs["latency_ms"]:
            await asyncio.sleep(float(self.knobs["latency_ms"]) / 1000.0)
        return None

    # -- OpenAI ------------------------------------------------------------------------
    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        fault = await self._fault(request, body)
        if fault is not None:
            return fault
        self.served += 1
        tools = body.get("tools")
        messages = body.get("messages") or []
        call_tool = (
            bool(tools) and body.get("tool_choice") != "none" and messages[-1].get("role") != "tool"
        )
        text = "" if call_tool else self._reply_text(body)
        finish = "tool_calls" if call_tool else "stop"
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        if self.knobs["honor_max_tokens"] and isinstance(limit, int) and _words(text) > limit:
            text, finish = " ".join(text.split()[:limit]), "length"
        prompt_tokens = self._prompt_tokens(body)
        tool_calls = None
        if call_tool:
            fn = tools[0].get("function", {})
            args = orjson.dumps({"query": _content(messages[-1])[:40]}).decode()
            tool_calls = [
                {
                    "id": "call_mock_1",
                    "type": "function",
                    "function": {"name": fn.get("name", "tool"), "arguments": args},
                }
            ]
        completion_tokens = _words(text) if text else 5
        n = int(body.get("n") or 1)
        cid = "chatcmpl-" + hashlib.sha1(orjson.dumps(body)).hexdigest()[:16]
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens * n,
            "total_tokens": prompt_tokens + completion_tokens * n,
        }
        if body.get("stream"):
            return await self._stream_chat(request, body, cid, text, tool_calls, usage, n, finish)
        if self.knobs["ms_per_token"]:
            await asyncio.sleep(completion_tokens * float(self.knobs["ms_per_token"]) / 1000.0)
        message: Json = {"role": "assistant", "content": text or None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        resp: Json = {
            "id": cid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": i,
                    "message": message,
                    "finish_reason": finish,
                    **_logprobs(body, _pieces(text)),
                }
                for i in range(n)
            ],
        }
        if isinstance(body.get("service_tier"), str):
            resp["service_tier"] = _served_tier(body["service_tier"])
        if not self.knobs["no_usage"]:
            resp["usage"] = usage
        return web.Response(body=orjson.dumps(resp), content_type="application/json")

    async def _stream_chat(
        self,
        request: web.Request,
        body: Json,
        cid: str,
        text: str,
        tool_calls: list[Json] | None,
        usage: Json,
        n: int,
        finish: str,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        base = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model"),
        }
        if isinstance(body.get("service_tier"), str):  # as OpenAI: in every chunk
            base["service_tier"] = _served_tier(body["service_tier"])
        pieces = _pieces(text)
        events: list[Json] = []
        for i in range(n):
            events.append(
                {
                    **base,
                    "choices": [
                        {
                            "index": i,
                            "delta": {"role": "assistant", "content": ""},
                            "finish_reason": None,
                        }
                    ],
                }
            )
            for p in pieces:
                events.append(
                    {
                        **base,
                        "choices": [
                            {
                                "index": i,
                                "delta": {"content": p},
                                "finish_reason": None,
                                **_logprobs(body, [p]),
                            }
                        ],
                    }
                )
            if tool_calls:
                call = tool_calls[0]
                events.append(
                    {
                        **base,
                        "choices": [
                            {
                                "index": i,
                                "delta": {
                                    "tool_calls": [
                                        {
                                            "index": 0,
                                            "id": call["id"],
                                            "type": "function",
                                            "function": {
                                                "name": call["function"]["name"],
                                                "arguments": "",
                                            },
                                        }
                                    ]
                                },
                                "finish_reason": None,
                            }
                        ],
                    }
                )
                events.append(
                    {
                        **base,
                        "choices": [
                            {
                                "index": i,
                                "delta": {
                                    "tool_calls": [
                                        {
                                            "index": 0,
                                            "function": {
                                                "arguments": call["function"]["arguments"]
                                            },
                                        }
                                    ]
                                },
                                "finish_reason": None,
                            }
                        ],
                    }
                )
            events.append(
                {
                    **base,
                    "choices": [
                        {
                            "index": i,
                            "delta": {},
                            "finish_reason": finish,
                        }
                    ],
                }
            )
        wants_usage = (body.get("stream_options") or {}).get("include_usage")
        if wants_usage and not self.knobs["no_usage"]:
            events.append({**base, "choices": [], "usage": usage})
        delay = float(self.knobs["ms_per_token"]) / 1000.0
        for idx, ev in enumerate(events):
            if self.knobs["truncate_stream"] and idx == len(events) // 2:
                await asyncio.sleep(0)
                request.transport.close() if request.transport else None  # abrupt close
                return resp
            if self.knobs["malformed_stream"] and idx == 2:
                await resp.write(b"data: {not json\n\n")
                continue
            if delay and idx:
                await asyncio.sleep(delay)
            if idx == 1 and self.knobs["first_token_ms"]:
                await asyncio.sleep(float(self.knobs["first_token_ms"]) / 1000.0)
            await resp.write(b"data: " + orjson.dumps(ev) + b"\n\n")
        if not self.knobs["omit_done"]:
            await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        fault = await self._fault(request, body)
        if fault is not None:
            return fault
        self.served += 1
        text = self._reply_text(body)
        prompt_tokens = self._prompt_tokens(body)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": _words(text),
            "total_tokens": prompt_tokens + _words(text),
        }
        base = {
            "id": "cmpl-mock",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.get("model"),
        }
        if body.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for w in text.split():
                ev = {**base, "choices": [{"index": 0, "text": w + " ", "finish_reason": None}]}
                await resp.write(b"data: " + orjson.dumps(ev) + b"\n\n")
            ev = {**base, "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}
            await resp.write(b"data: " + orjson.dumps(ev) + b"\n\n")
            if (body.get("stream_options") or {}).get("include_usage") and not self.knobs[
                "no_usage"
            ]:
                await resp.write(
                    b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n"
                )
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        out: Json = {**base, "choices": [{"index": 0, "text": text, "finish_reason": "stop"}]}
        if not self.knobs["no_usage"]:
            out["usage"] = usage
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    async def embeddings(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        fault = await self._fault(request, body)
        if fault is not None:
            return fault
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        data = []
        for i, item in enumerate(items):
            digest = hashlib.sha256(str(item).encode()).digest()
            data.append(
                {"object": "embedding", "index": i, "embedding": [b / 255.0 for b in digest[:8]]}
            )
        tokens = sum(_words(str(x)) for x in items)
        reply: Json = {"object": "list", "data": data, "model": body.get("model")}
        if not self.knobs["no_usage"]:
            reply["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return web.json_response(reply)

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": "mock-model", "object": "model", "created": 0, "owned_by": "mock"}],
            }
        )

    # -- Anthropic Messages API --------------------------------------------------------
    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        fault = await self._fault(request, body)
        if fault is not None:
            return fault
        if not request.headers.get("x-api-key"):
            return web.json_response(
                {
                    "type": "error",
                    "error": {"type": "authentication_error", "message": "missing x-api-key"},
                },
                status=401,
            )
        self.served += 1
        msgs = body.get("messages") or []
        last = _content(msgs[-1]) if msgs else ""
        text = "Claude echo: " + " ".join(last.split()[:12])
        in_tok = sum(_words(_content(m)) + 3 for m in msgs) + _words(str(body.get("system", "")))
        out_tok = _words(text)
        mid = "msg_mock_" + hashlib.sha1(orjson.dumps(body)).hexdigest()[:12]
        if not body.get("stream"):
            answer = {
                "id": mid,
                "type": "message",
                "role": "assistant",
                "model": body.get("model"),
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": in_tok, "output_tokens": out_tok},
            }
            if not self.knobs["stall_s"]:
                return web.json_response(answer)
            # headers at once, then (with stall_ping_s) a space now and then before the JSON,
            # as proxies keep a long non-stream answer's connection alive
            whole = web.StreamResponse(headers={"Content-Type": "application/json"})
            await whole.prepare(request)

            async def space(event: str, data: Json) -> None:
                await whole.write(b" ")

            await self._stall(space)
            await whole.write(orjson.dumps(answer))
            await whole.write_eof()
            return whole
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(event: str, data: Json) -> None:
            await resp.write(
                f"event: {event}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"
            )

        await send(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": body.get("model"),
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": in_tok, "output_tokens": 1},
                },
            },
        )
        await send(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        for i, w in enumerate(text.split()):
            await send(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": w + " "},
                },
            )
            if i == 0 and self.knobs["stall_s"]:
                await self._stall(send)
        await send("content_block_stop", {"type": "content_block_stop", "index": 0})
        await send(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": out_tok},
            },
        )
        await send("message_stop", {"type": "message_stop"})
        await resp.write_eof()
        return resp

    async def _stall(self, send: Any) -> None:
        """Wait `stall_s`, sending Anthropic's keep-alive `ping` event every `stall_ping_s`."""
        until = time.monotonic() + float(self.knobs["stall_s"])
        every = float(self.knobs["stall_ping_s"])
        while (left := until - time.monotonic()) > 0:
            await asyncio.sleep(min(every, left) if every else left)
            if every and time.monotonic() < until:
                await send("ping", {"type": "ping"})

    # -- control -----------------------------------------------------------------------
    async def control(self, request: web.Request) -> web.Response:
        changes = orjson.loads(await request.read() or b"{}")
        unknown = set(changes) - set(self.knobs)
        if unknown:
            return web.json_response({"error": f"unknown knobs {sorted(unknown)}"}, status=400)
        self.knobs.update(changes)
        return web.json_response(self.knobs)

    async def recorded(self, request: web.Request) -> web.Response:
        return web.json_response({"served": self.served, "requests": list(self.requests)})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/_control", self.control)
        app.router.add_get("/_requests", self.recorded)
        return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--latency-ms", type=float, default=None)
    parser.add_argument("--ms-per-token", type=float, default=None)
    parser.add_argument("--fail-rate", type=float, default=None)
    parser.add_argument("--reply", default=None)
    args = parser.parse_args()
    mock = MockUpstream(
        latency_ms=args.latency_ms,
        ms_per_token=args.ms_per_token,
        fail_rate=args.fail_rate,
        reply=args.reply,
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(mock.app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
