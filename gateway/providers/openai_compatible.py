"""Any upstream that speaks OpenAI's wire format: OpenAI, Groq, Together, vLLM, our engine...

One pooled aiohttp session per upstream base URL. aiohttp rather than httpx: measured here
(shared/bench) plain `httpx.AsyncClient` gave ~190 req/s where aiohttp gave ~875 at c=16.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

import aiohttp
import orjson
from aiohttp.http_exceptions import HttpProcessingError

from gateway.cache.replay import chunks_of
from gateway.errors import InvalidRequest, UpstreamError, UpstreamTimeout
from gateway.pipeline.stream import StreamAssembler
from gateway.providers.base import (
    Endpoint,
    Json,
    masked_text,
    prompts_in,
    provider_key,
)
from gateway.providers.embeddings import in_requested_format
from gateway.providers.openai_shape import Shaper, failed_choice
from gateway.providers.upstream_errors import (
    MAX_ERROR_BYTES,
    MAX_MESSAGE_CHARS,
    context_too_long,
    error_message,
    message_of,
    rate_limited,
    unbuildable,
    upstream_error,
)
from gateway.routing.catalog import Deployment

log = logging.getLogger("thriftgate.providers")

# One stream line may be far past aiohttp's 512 KiB line cap: a base64 image or audio delta, or
# a whole tool call's arguments in one event. Past this much it is a runaway upstream.
MAX_EVENT_BYTES = 64 * 1024 * 1024
DEFAULT_BASES = {
    "openai": "https://api.openai.com/v1",
    "groq": "https://api.groq.com/openai/v1",
    "together": "https://api.together.xyz/v1",
    "fireworks": "https://api.fireworks.ai/inference/v1",
}


class OpenAICompatibleProvider:
    def __init__(self, *, connect_timeout_s: float = 5.0) -> None:
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._connect_timeout_s = connect_timeout_s
        # Deployments that refused `max_tokens` for `max_completion_tokens` (OpenAI's reasoning
        # models): their chat limits are sent under that name (see `_refused_max_tokens`).
        self._max_completion_tokens: set[str] = set()

    def _session(self, base: str) -> aiohttp.ClientSession:
        session = self._sessions.get(base)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=300
            )
            session = aiohttp.ClientSession(
                connector=connector,
                json_serialize=lambda o: orjson.dumps(o).decode(),
                auto_decompress=True,
            )
            self._sessions[base] = session
        return session

    @staticmethod
    def _url(dep: Deployment, path: str) -> str:
        base = dep.config.api_base or DEFAULT_BASES.get(dep.provider)
        if not base:
            raise UpstreamError(
                f"Deployment {dep.name!r} has no api_base configured.", retryable=True
            )
        return base.rstrip("/") + "/" + path

    @staticmethod
    def _headers(dep: Deployment) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = provider_key(dep)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _timeout(self, timeout_s: float, *, stream: bool) -> aiohttp.ClientTimeout:
        if stream:
            # The deadline covers time to first byte and each gap between chunks.
            return aiohttp.ClientTimeout(
                total=None, connect=self._connect_timeout_s, sock_read=timeout_s
            )
        return aiohttp.ClientTimeout(total=timeout_s, connect=self._connect_timeout_s)

    async def _post_json(self, dep: Deployment, path: str, body: Json, timeout_s: float) -> Json:
        url = self._url(dep, path)
        data = orjson.dumps(body)
        session = self._session(dep.config.api_base or dep.provider)
        try:
            async with session.post(
                url,
                data=data,
                headers=self._headers(dep),
                timeout=self._timeout(timeout_s, stream=False),
                allow_redirects=False,  # followed, a 301/302 turns the POST into a GET
            ) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise upstream_error(dep, resp.status, raw, resp.headers, path)
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"Deployment {dep.name!r} did not answer within {timeout_s:.3g} s."
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"Deployment {dep.name!r} unreachable: {type(exc).__name__}."
            ) from exc
        except ValueError as exc:
            raise unbuildable(dep, exc) from exc
        # a JSON body whatever its Content-Type says; else the events of a server that streamed
        streamed = _JSON_START.match(raw) is None and _SSE_DATA.search(raw, 0, 4096) is not None
        parsed = _assembled(dep, raw, path) if streamed else _json_object(dep, raw, "a body")
        if _is_error(parsed) and "data" not in parsed:
            # some providers answer an overload with HTTP 200 and an error body
            why = masked_text(dep, message_of(parsed), MAX_MESSAGE_CHARS)
            raise UpstreamError(f"Deployment {dep.name!r} answered with an error: {why}")
        return parsed

    async def complete(
        self, body: Json, dep: Deployment, *, endpoint: Endpoint, timeout_s: float
    ) -> Json:
        payload = self._limited(dep, endpoint, {**body, "model": dep.served_model})
        payload.pop("stream", None)
        payload.pop("stream_options", None)
        try:
            out = await self._post_json(dep, endpoint, payload, timeout_s)
        except InvalidRequest as exc:
            if not self._refused_max_tokens(dep, endpoint, payload, exc):
                raise
            out = await self._post_json(dep, endpoint, as_max_completion_tokens(payload), timeout_s)
        if not isinstance(out.get("choices"), list):
            raise UpstreamError(f"Deployment {dep.name!r} returned no choices.")
        return Shaper(dep.served_model, chat=endpoint == "chat/completions").body(out)

    async def embed(self, body: Json, dep: Deployment, *, timeout_s: float) -> Json:
        out = await self._post_json(
            dep, "embeddings", {**body, "model": dep.served_model}, timeout_s
        )
        if not isinstance(out.get("data"), list):
            raise UpstreamError(f"Deployment {dep.name!r} returned no embeddings.")
        return in_requested_format(body, out)

    def _limited(self, dep: Deployment, endpoint: Endpoint, payload: Json) -> Json:
        if endpoint == "chat/completions" and dep.name in self._max_completion_tokens:
            return as_max_completion_tokens(payload)
        return payload

    def _refused_max_tokens(
        self, dep: Deployment, endpoint: Endpoint, payload: Json, exc: InvalidRequest
    ) -> bool:
        """The upstream refused `max_tokens` for `max_completion_tokens`, as OpenAI's reasoning
        models do ("Unsupported parameter: 'max_tokens' ... Use 'max_completion_tokens'
        instead"): remember it for the deployment; the caller sends the limit again so named.
        The gateway itself writes `max_tokens` (a Responses request's `max_output_tokens`), and
        most OpenAI-compatible servers take only that name."""
        refused = (
            endpoint == "chat/completions"
            and "max_tokens" in payload
            and exc.param == "max_tokens"
            and exc.code == "unsupported_parameter"
        )
        if refused:
            log.info("deployment %s takes max_completion_tokens, not max_tokens", dep.name)
            self._max_completion_tokens.add(dep.name)
        return refused

    async def stream(
        self, body: Json, dep: Deployment, *, endpoint: Endpoint, timeout_s: float
    ) -> AsyncIterator[Json]:
        payload = self._limited(dep, endpoint, {**body, "model": dep.served_model, "stream": True})
        try:
            # a refusal is an HTTP 400 answered before the stream's first chunk
            async with aclosing(self._stream(payload, dep, endpoint, timeout_s)) as chunks:
                async for chunk in chunks:
                    yield chunk
            return
        except InvalidRequest as exc:
            if not self._refused_max_tokens(dep, endpoint, payload, exc):
                raise
        payload = as_max_completion_tokens(payload)
        async with aclosing(self._stream(payload, dep, endpoint, timeout_s)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _stream(
        self, payload: Json, dep: Deployment, endpoint: Endpoint, timeout_s: float
    ) -> AsyncGenerator[Json, None]:
        url = self._url(dep, endpoint)
        session = self._session(dep.config.api_base or dep.provider)
        first_by = time.monotonic() + timeout_s  # the first event, keep-alive comments or not
        finished = False  # every answer's finish_reason (or the usage chunk) has arrived
        answers = _answers_asked(payload, endpoint)
        ended: set[int] = set()  # indices of the answers that have finished
        shaper = Shaper(dep.served_model, chat=endpoint == "chat/completions")
        try:
            async with session.post(
                url,
                data=orjson.dumps(payload),
                headers=self._headers(dep),
                timeout=self._timeout(timeout_s, stream=True),
                allow_redirects=False,
            ) as resp:
                if resp.status != 200:
                    raw = await resp.content.read(MAX_ERROR_BYTES)
                    raise upstream_error(dep, resp.status, raw, resp.headers, endpoint)
                if resp.content_type == "application/json":
                    # not a stream: a server that ignores `stream: true`, or an error in a 200
                    for chunk in _unstreamed(dep, await resp.read(), endpoint, shaper):
                        yield chunk
                    return
                done = False
                events_of = _events(dep, resp.content, first_by, timeout_s)
                async with aclosing(events_of) as events:
                    async for data in events:
                        if data.strip() == b"[DONE]":
                            done = True
                            break
                        chunk = shaper.chunk(_chunk(dep, data))
                        # The usage-only chunk after the finish is by spec the last one: an
                        # upstream that then idles without [DONE] must not turn into a stall.
                        done = finished and _usage_only(chunk)
                        finished = finished or _final(chunk, ended, answers)
                        yield chunk
                        if done:
                            resp.close()  # not read to its end: the connection cannot be reused
                            break
                # Some servers never send [DONE]; the SDK ends a stream at EOF without it, so
                # only a stream cut before its finish_reason (or usage) chunk came up short.
                if not (done or finished):
                    raise UpstreamError(f"Deployment {dep.name!r} ended the stream early.")
        except TimeoutError as exc:
            if finished:
                return  # the answer was whole; only the [DONE] (or the close) never came
            raise UpstreamTimeout(
                f"Deployment {dep.name!r} stalled for more than {timeout_s:.3g} s."
            ) from exc
        except (aiohttp.ClientError, HttpProcessingError) as exc:
            # HttpProcessingError: the upstream's HTTP itself was broken (a bad chunk size...)
            raise UpstreamError(
                f"Deployment {dep.name!r} connection failed: {type(exc).__name__}."
            ) from exc
        except ValueError as exc:
            raise unbuildable(dep, exc) from exc

    async def aclose(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


def as_max_completion_tokens(payload: Json) -> Json:
    """`payload` with its `max_tokens` sent as `max_completion_tokens` (which wins if both)."""
    out = {k: v for k, v in payload.items() if k != "max_tokens"}
    out.setdefault("max_completion_tokens", payload.get("max_tokens"))
    return out


async def _events(
    dep: Deployment,
    content: aiohttp.StreamReader,
    first_by: float | None = None,
    gap_s: float | None = None,
) -> AsyncGenerator[bytes, None]:
    """Each event's data: its `data:` lines joined by "\n", as the SSE spec and the SDK read a
    pretty-printed event; lines end in LF, CRLF or a bare CR, as the spec allows. Comments and
    other fields (`event:`, `id:`) carry nothing we use.

    Comments keep the connection's read timeout from firing (`: ping`, OpenRouter's
    `: OPENROUTER PROCESSING`), as does an upstream that trickles a byte at a time, so such a
    server would hold the request for ever: the first event is due by `first_by`
    (time.monotonic()), and each next one `gap_s` after the consumer asked for it (a slow
    client's pauses are not the upstream's), or the wait is a TimeoutError.

    Lines are split here, not by aiohttp's reader, which caps a line at 512 KiB; and in this one
    generator, since every chunk of every stream passes through it.
    """
    data: list[bytes] = []
    size = 0
    pending = bytearray()  # a line not yet ended: grows in place, however many pieces it spans
    # Lines end in bare CRs (the SSE spec allows CR, LF and CRLF): from then on each piece's
    # line ends are made "\n" before the split. Found only where a piece holds no "\n", so
    # an LF or CRLF stream (a CRLF's "\r" is stripped line by line) pays nothing for it.
    bare_cr = False
    skip_lf = False  # the last piece ended in "\r": a "\n" opening this one ends the same line
    due = first_by
    async for piece in content.iter_any():
        if due is not None and time.monotonic() > due:
            raise TimeoutError("no event before the deadline, only comments or a partial line")
        if bare_cr:
            piece, skip_lf = _lf_ended(piece, skip_lf)
        if b"\n" not in piece:
            start = len(pending) - 1 if pending else 0
            pending += piece
            # a "\r" before the line's last byte is followed by no "\n": it ends a line
            if pending.find(b"\r", start, len(pending) - 1) == -1:
                if len(pending) > MAX_EVENT_BYTES:
                    over = f"a stream line over {MAX_EVENT_BYTES} bytes"
                    raise UpstreamError(f"Deployment {dep.name!r} sent {over}.")
                continue
            bare_cr = True
            piece, skip_lf = _lf_ended(bytes(pending), False)
            pending.clear()
        if pending:
            pending += piece
            piece = bytes(pending)
            pending.clear()
        *lines, rest = piece.split(b"\n")
        pending += rest
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:  # a blank line ends the event
                if data:
                    yield b"\n".join(data)
                    due = None if gap_s is None else time.monotonic() + gap_s
                data, size = [], 0
            elif line.startswith(b"data:"):
                value = line[5:].removeprefix(b" ")
                if not data and value.strip() == b"[DONE]":
                    yield value  # the end, even from a server that never sends the blank line
                    due = None if gap_s is None else time.monotonic() + gap_s
                    continue
                data.append(value)
                size += len(value) + 1
                if size > MAX_EVENT_BYTES:
                    raise UpstreamError(
                        f"Deployment {dep.name!r} sent a stream event over {MAX_EVENT_BYTES} bytes."
                    )
    line = bytes(pending).removesuffix(b"\r")
    if line.startswith(b"data:"):  # the body ended without its last newline
        data.append(line[5:].removeprefix(b" "))
    if data:  # the last event's closing blank line may never come
        yield b"\n".join(data)


def _unstreamed(dep: Deployment, raw: bytes, endpoint: Endpoint, shaper: Shaper) -> list[Json]:
    """The chunks of a whole answer sent to a stream request, as a cache hit is replayed."""
    body = _json_object(dep, raw, "a body")
    if _is_error(body):
        why = masked_text(dep, message_of(body), MAX_MESSAGE_CHARS)
        raise UpstreamError(f"Deployment {dep.name!r} answered with an error: {why}")
    if not isinstance(body.get("choices"), list):
        raise UpstreamError(f"Deployment {dep.name!r} returned no choices.")
    chat = endpoint == "chat/completions"
    body = shaper.body(body)
    body["object"] = "chat.completion" if chat else "text_completion"
    return chunks_of(body, include_usage=True)


_SSE_DATA = re.compile(rb"(?:^|[\r\n])data:")
_JSON_START = re.compile(rb"\s*[{\[]")


def _assembled(dep: Deployment, raw: bytes, path: str) -> Json:
    """A whole answer from a server that streamed it although it was not asked to (servers
    that ignore `stream: false`, or frame one JSON body as an event): its chunks put together,
    as the gateway does for a stream's ledger row and cache entry."""
    events: list[bytes] = []
    data: list[bytes] = []
    for line in [*raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"), b""]:
        if line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
        elif not line and data:
            events.append(b"\n".join(data))
            data = []
    chunks = [_chunk(dep, e) for e in events if e.strip() != b"[DONE]"]
    if len(chunks) == 1 and not _is_chunk(chunks[0]):
        return chunks[0]  # one whole body, framed as an event
    assembler = StreamAssembler()
    for chunk in chunks:
        assembler.add(chunk)
    return assembler.result(chat=path == "chat/completions")


def _is_chunk(parsed: Json) -> bool:
    """A stream's chunk, not a whole answer: its choices carry a `delta`."""
    if parsed.get("object") == "chat.completion.chunk":
        return True
    choices = parsed.get("choices")
    return isinstance(choices, list) and any(isinstance(c, dict) and "delta" in c for c in choices)


def _lf_ended(piece: bytes, skip_lf: bool) -> tuple[bytes, bool]:
    """`piece` with its CR and CRLF line ends made LF (JSON never holds a raw CR); and whether
    it ended in "\r", so that a "\n" opening the next piece is the same line end."""
    if skip_lf and piece.startswith(b"\n"):
        piece = piece[1:]
    return piece.replace(b"\r\n", b"\n").replace(b"\r", b"\n"), piece.endswith(b"\r")


def _json_object(dep: Deployment, raw: bytes, what: str) -> Json:
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(f"Deployment {dep.name!r} sent {what} that is not JSON.") from exc
    if not isinstance(parsed, dict):
        raise UpstreamError(f"Deployment {dep.name!r} sent {what} that is not a JSON object.")
    return parsed


def _chunk(dep: Deployment, data: bytes) -> Json:
    """One event's data as a chunk, or why the upstream's stream is unusable."""
    chunk = _json_object(dep, data, "a stream event")
    if _is_error(chunk):
        why = masked_text(dep, message_of(chunk), MAX_MESSAGE_CHARS)
        raise UpstreamError(f"Deployment {dep.name!r} failed mid-stream: {why}")
    return chunk


def _is_error(parsed: Json) -> bool:
    """An error where an answer or a chunk was due: a bare error object, or OpenRouter's
    mid-stream failure, which keeps the chunk's shape with a top-level `error` and a choice
    whose `finish_reason` is "error" (as a 200 it would be billed, cached and counted as a
    success, while the client's SDK raised on its `error`)."""
    if "error" in parsed and ("choices" not in parsed or parsed["error"]):
        return True
    return failed_choice(parsed) is not None


def _usage_only(chunk: Json) -> bool:
    """The trailing usage chunk: `choices: []` and a usage block."""
    return not chunk.get("choices") and bool(chunk.get("usage"))


def _final(chunk: Json, ended: set[int], answers: int) -> bool:
    """Whether the stream is whole with `chunk`: the trailing usage chunk, or the last of the
    `answers` finish reasons (`ended` collects the finished choices' indices). With several
    answers (`n`, several prompts), one cut after the first finish is still short."""
    if _usage_only(chunk):
        return True
    for choice in chunk.get("choices") or ():
        if isinstance(choice, dict) and choice.get("finish_reason"):
            index = choice.get("index", 0)
            ended.add(index if isinstance(index, int) else 0)
    return len(ended) >= answers


def _answers_asked(payload: Json, endpoint: Endpoint) -> int:
    """How many answers a stream carries: `n` each, for each prompt of a legacy completions
    request that sends several (strings, or token-id arrays)."""
    n = payload.get("n")
    each = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    return each * prompts_in(payload, endpoint)


__all__ = [
    "DEFAULT_BASES",
    "MAX_EVENT_BYTES",
    "OpenAICompatibleProvider",
    "context_too_long",
    "error_message",
    "rate_limited",
    "upstream_error",
]
