"""Fakes of the OpenAI-compatible servers teams run themselves or rent: Ollama's /v1, llama.cpp's
llama-server, vLLM, Hugging Face TGI's Messages API, LM Studio, OpenRouter, Groq, and a bare
minimum server (no ids, no usage, no [DONE]). Each answers chat completions, plain, streamed and
with tools, with the quirks its real counterpart is known for (read from their sources and issue
trackers), so the gateway can be driven against them by the official SDK.

One threaded HTTP server holds them all: the first path segment names the server
(`http://host:port/ollama/v1` is an Ollama base URL). What an answer does is picked by markers
in the last user message:

- `[tool]` (or `tools` in the request): a tool call, `get_weather({"city": "Paris"})`;
- `[long]`: the server's own "context too long" refusal (llama.cpp, vLLM, TGI, LM Studio);
- `[think]`: reasoning before the answer, in the field the server uses for it;
- `[broken]`: the stream fails after its first content chunk, in the server's error shape;
- `[no-credit]`: OpenRouter's 402 for an account out of credits;
- `[bad-grammar]`: llama.cpp's 400 for a request it cannot parse (its `code` is the number 400);
- `[gen-fail]`: TGI's 424 for a generation that failed (router/src/server.rs: GenerationError);
- `[upstream-timeout]`: OpenRouter's 408 for a request that timed out;
- `[unloaded]`: LM Studio's 400 when no model is loaded.

The `proxy` server is an nginx in front of a dead one: a 502 with nginx's HTML page. The
`always-sse` server streams whatever `stream` says (Kaito's and Unsloth's servers did), and the
`framed` one sends a whole answer as one SSE event followed by `data: [DONE]`; the
`mislabelled` one sends its JSON answers as `text/event-stream`; the `never-sse` one answers
a stream request with one JSON body (an answer, or for `[broken]` an error in a 200).

Every request body is kept in `received`, per server.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Json = dict[str, Any]

ANSWER = ["The", " weather", " is", " fine", "."]
REASONING = "The user asks about weather; answer briefly."
PROMPT_TOKENS = 17
COMPLETION_TOKENS = 5
CALL_ARGUMENTS = {"city": "Paris"}

# Each server's refusal of a prompt longer than its context, as (status, body).
CONTEXT_REFUSALS: dict[str, tuple[int, Json]] = {
    # tools/server/utils.hpp format_error_response(ERROR_TYPE_EXCEED_CONTEXT_SIZE)
    "llamacpp": (
        400,
        {
            "error": {
                "code": 400,
                "message": "the request exceeds the available context size, try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 5210,
                "n_ctx": 4096,
            }
        },
    ),
    # vllm/entrypoints/openai/serving_engine.py _validate_input, as an ErrorResponse
    "vllm": (
        400,
        {
            "object": "error",
            "message": "This model's maximum context length is 4096 tokens. However, you "
            "requested 5210 tokens (4186 in the messages, 1024 in the completion). Please reduce "
            "the length of the messages or completion.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
    ),
    # router/src/validation.rs ValidationError::MaxTotalTokens
    "tgi": (
        422,
        {
            "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. "
            "Given: 4186 `inputs` tokens and 1024 `max_new_tokens`",
            "error_type": "validation",
        },
    ),
    "lmstudio": (
        400,
        {
            "error": "Trying to keep the first 5210 tokens when context the overflows. However, "
            "the model is loaded with context length of only 4096 tokens, which is not enough. "
            "Try to load the model with a larger context length, or provide a shorter input"
        },
    ),
}


NO_CREDIT = (
    "This request requires more credits, or fewer max_tokens. You requested up to 4096 tokens, "
    "but can only afford 1250. To increase, visit https://openrouter.ai/settings/credits"
)
NOT_LOADED = (
    "No models loaded. Please load a model in the developer page or use the `lms load` command."
)
NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


def usage(server: str) -> Json:
    base: Json = {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }
    if server == "vllm":
        base["prompt_tokens_details"] = None
    if server == "openrouter":
        base.update(
            cost=0.0000123,
            is_byok=False,
            prompt_tokens_details={"cached_tokens": 0},
            completion_tokens_details={"reasoning_tokens": 0},
        )
    return base


TIMINGS = {"prompt_n": PROMPT_TOKENS, "prompt_ms": 12.5, "predicted_n": 5, "predicted_ms": 40.1}


class Request:
    def __init__(self, server: str, body: Json) -> None:
        self.server = server
        self.body = body
        messages = body.get("messages") or []
        last = messages[-1].get("content") if messages else ""
        self.text = last if isinstance(last, str) else json.dumps(last)
        self.tool = "[tool]" in self.text or bool(body.get("tools"))
        self.think = "[think]" in self.text
        self.broken = "[broken]" in self.text
        self.long = "[long]" in self.text
        opts = body.get("stream_options") or {}
        self.include_usage = bool(opts.get("include_usage"))
        self.model = str(body.get("model", ""))

    def reasoning_field(self) -> str:
        # vLLM's reasoning parsers and DeepSeek: reasoning_content; Ollama and OpenRouter: reasoning
        return "reasoning_content" if self.server in ("vllm", "llamacpp") else "reasoning"

    def finish(self) -> str:
        if self.tool:
            return "tool_calls"
        if self.server == "tgi" and self.body.get("stop"):
            return "stop_sequence"  # TGI's FinishReason::StopSequence, unmapped in chat
        return "stop"

    def call(self, *, whole: bool) -> Json:
        """The tool call; TGI's Messages API answers the arguments as an object."""
        arguments: Any = json.dumps(CALL_ARGUMENTS)
        if self.server == "tgi" and whole:
            arguments = dict(CALL_ARGUMENTS)
        fn: Json = {"name": "get_weather", "arguments": arguments}
        if self.server == "tgi":
            fn["description"] = None
        return {"id": "call_0" if self.server != "tgi" else "0", "type": "function", "function": fn}

    # -- one whole answer -------------------------------------------------------------------

    def completion(self) -> Json:
        message: Json = {"role": "assistant", "content": None if self.tool else "".join(ANSWER)}
        if self.tool:
            message["tool_calls"] = [self.call(whole=True)]
        if self.think:
            message[self.reasoning_field()] = REASONING
        choice: Json = {"index": 0, "message": message, "finish_reason": self.finish()}
        body: Json = {
            "id": "chatcmpl-" + self.server,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [choice],
            "usage": usage(self.server),
        }
        if self.server == "tgi":
            body["id"] = ""
            body["system_fingerprint"] = "3.0.1-sha-bb9095a"
        if self.server == "llamacpp":
            body["timings"] = TIMINGS
            body["system_fingerprint"] = "b4920-1e2f3a4"
        if self.server == "ollama":
            body["system_fingerprint"] = "fp_ollama"
        if self.server == "minimal":
            body = {"choices": [choice]}
        if self.server == "openrouter" and self.broken:
            # a failure after generation started, in a 200 (OpenRouter's errors documentation)
            choice.update(finish_reason="error", message={"role": "assistant", "content": ""})
            body["error"] = {"code": 502, "message": "Provider returned error"}
        return body

    # -- a stream ---------------------------------------------------------------------------

    def chunk(self, delta: Json, finish: str | None = None, **extra: Any) -> Json:
        choice: Json = {"index": 0, "delta": delta, "finish_reason": finish}
        if self.server == "minimal":
            return {"choices": [choice], **extra}
        out: Json = {
            "id": "chatcmpl-" + self.server if self.server != "tgi" else "",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
            "choices": [choice],
            **extra,
        }
        if self.server == "ollama":
            out["system_fingerprint"] = "fp_ollama"
        return out

    def chunks(self) -> Iterator[Json | str]:
        """The stream's events: chunks, or text for a comment or a raw error line."""
        if self.server == "openrouter":
            yield ": OPENROUTER PROCESSING"
        if self.server == "llamacpp":
            yield self.chunk({"role": "assistant", "content": None})
        if self.think:
            yield self.chunk({"role": "assistant", self.reasoning_field(): REASONING})
        if self.tool:
            call = self.call(whole=False)
            args = call["function"]["arguments"]
            first = {**call, "index": 0, "function": {"name": "get_weather", "arguments": ""}}
            yield self.chunk({"role": "assistant", "tool_calls": [first]})
            for i in range(0, len(args), 6):
                piece = {"index": 0, "function": {"arguments": args[i : i + 6]}}
                yield self.chunk({"tool_calls": [piece]})
        else:
            for i, word in enumerate(ANSWER):
                delta: Json = {"content": word}
                if self.server == "ollama" or i == 0:
                    delta["role"] = "assistant"
                extra: Json = {}
                if self.server == "vllm" and (self.body.get("stream_options") or {}).get(
                    "continuous_usage_stats"
                ):
                    extra["usage"] = {**usage("vllm"), "completion_tokens": i + 1}
                yield self.chunk(delta, **extra)
                if self.broken and i == 0:
                    yield from self.failure()
                    return
        extra = {}
        if self.server == "llamacpp":
            extra["timings"] = TIMINGS
        if self.server == "groq":
            extra["x_groq"] = {"id": "req_01", "usage": {**usage("groq"), "queue_time": 0.01}}
        yield self.chunk({}, self.finish(), **extra)
        if self.include_usage and self.server != "minimal":
            closing = {**self.chunk({}), "choices": [], "usage": usage(self.server)}
            if self.server == "llamacpp":
                closing["timings"] = TIMINGS
            yield closing

    def failure(self) -> Iterator[Json | str]:
        if self.server == "openrouter":
            # https://openrouter.ai/docs/api-reference/errors: mid-stream errors keep the chunk
            # shape, with the error at the top level and a finish_reason of "error"
            yield {
                **self.chunk({"content": ""}, "error"),
                "error": {"code": "server_error", "message": "Provider disconnected unexpectedly"},
            }
        elif self.server == "tgi":
            yield {
                "error": "Request failed during generation: CUDA out of memory",
                "error_type": "generation",
            }
        else:
            yield {"error": {"message": "engine died", "type": "server_error", "code": 500}}


class Handler(BaseHTTPRequestHandler):
    received: dict[str, list[Json]] = {}  # noqa: RUF012  (shared by the handler threads)
    lock = threading.Lock()

    def do_POST(self) -> None:
        parts = self.path.strip("/").split("/")
        server = parts[0]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw)
        with Handler.lock:
            Handler.received.setdefault(server, []).append(body)
        if parts[1:] != ["v1", "chat", "completions"]:
            if server in ("ollama", "chat"):  # Go's mux: a path it does not serve
                return self.send(404, b"404 page not found", "text/plain")
            return self.reply(404, {"detail": "Not Found"})
        if server == "proxy":
            return self.send(502, NGINX_502, "text/html")
        req = Request(server, body)
        if "[no-credit]" in req.text and server == "openrouter":
            return self.reply(402, {"error": {"code": 402, "message": NO_CREDIT}})
        if "[gen-fail]" in req.text and server == "tgi":
            err = {"error": "Request failed during generation: Server error: CUDA out of memory"}
            return self.reply(424, {**err, "error_type": "generation"})
        if "[upstream-timeout]" in req.text and server == "openrouter":
            return self.reply(408, {"error": {"code": 408, "message": "Request timed out"}})
        if "[unloaded]" in req.text and server == "lmstudio":
            err = {"message": NOT_LOADED, "type": "invalid_request_error", "param": "model"}
            return self.reply(400, {"error": err})
        if "[bad-grammar]" in req.text and server == "llamacpp":
            err = {
                "code": 400,
                "message": "Failed to parse grammar",
                "type": "invalid_request_error",
            }
            return self.reply(400, {"error": err})
        if req.long and server in CONTEXT_REFUSALS:
            status, err = CONTEXT_REFUSALS[server]
            return self.reply(status, err)
        if server == "mislabelled" and not body.get("stream"):
            return self.send(200, json.dumps(req.completion()).encode(), "text/event-stream")
        if server == "framed" and not body.get("stream"):
            raw = b"data: " + json.dumps(req.completion()).encode() + b"\n\ndata: [DONE]\n\n"
            return self.send(200, raw, "text/event-stream")
        if server == "never-sse" and req.broken:
            return self.reply(200, {"error": {"message": "CUDA error: out of memory"}})
        if (not body.get("stream") and server != "always-sse") or server == "never-sse":
            return self.reply(200, req.completion())
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        crlf = server == "minimal"
        end = b"\r\n\r\n" if crlf else b"\n\n"
        prefix = b"data:" if server in ("tgi", "minimal") else b"data: "
        for event in req.chunks():
            if isinstance(event, str):
                self.wfile.write(event.encode() + end)
            else:
                self.wfile.write(prefix + json.dumps(event).encode() + end)
            self.wfile.flush()
        if server != "minimal":
            self.wfile.write(prefix + b"[DONE]" + end)
        self.close_connection = True

    def reply(self, status: int, body: Json) -> None:
        self.send(status, json.dumps(body).encode(), "application/json")

    def send(self, status: int, raw: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


class CompatUpstreams:
    """The fakes, started on a free local port (or `port`): `base(server)` is its /v1 URL."""

    def __init__(self, port: int = 0) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def base(self, server: str, *, v1: bool = True) -> str:
        return f"http://127.0.0.1:{self.port}/{server}" + ("/v1" if v1 else "")

    def root(self) -> str:
        """The URL without a path, as an Ollama's http://localhost:11434: a POST to its
        /chat/completions gets Go's 404 page."""
        return f"http://127.0.0.1:{self.port}"

    def received(self, server: str) -> list[Json]:
        with Handler.lock:
            return list(Handler.received.get(server, []))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
