"""Connection deadlines uvicorn lacks, in the HTTP protocol `thriftgate serve` runs it with.

**The request head.** uvicorn times out only a kept-alive connection left idle after an answer
(`timeout_keep_alive`, 5 s), and the first byte of a next request disarms even that: a new
connection that sends nothing, or a request head trickled a byte every few seconds, was held
for ever, by anyone, before any key is read (slowloris). Each one is a file descriptor; past
the process's open-file limit the gateway accepts no one. Here the head (request line and
headers) must be in whole within `request_read_timeout_s` (THRIFTGATE_REQUEST_READ_TIMEOUT_S,
the body's limit too: api/guards.py) of the connection's opening, or of the next request's
first byte: a head begun gets a 408 in OpenAI's error shape, a silent connection is closed.

The same deadline holds for the rest of a body the app answered without reading (a 401, a
413): uvicorn reads it to drop it, and each byte disarmed its keep-alive timeout. And a head
is refused (431) once it passes `max_header_bytes` by a megabyte: httptools keeps a head
until it ends, however long, and SizeGuard's exact 431 comes only then.

**An answer nobody reads.** uvicorn writes a whole non-stream answer into the transport at
once and closes the connection (keep-alive's end, or a stream cut by `ClientStream`) by
waiting for that buffer to drain: a client that asked for a large answer and stopped reading
held it in the process, and its connection, for ever (10 such clients of a 15 MB answer:
+430 MB RSS, as long as they liked). Once the buffer is over the transport's high-water mark,
a client that takes none of it for `client_stall_timeout_s` (THRIFTGATE_CLIENT_STALL_TIMEOUT_S,
as for a stream: api/disconnect.py) once the app is done with the answer has its connection
aborted (a stream cut for a stalled client, too, when the client never reads what was left).

**Closing on a body not read.** An answer sent before its request's body was read, with
`connection: close` (SizeGuard's 413 for a declared length past the limit, its 408), used to
close the socket with the body's bytes unread in it, and the kernel answers those with a reset:
a client still writing its body (Node's fetch writes it whole before it reads) got ECONNRESET
instead of the answer, and the SDKs retried a "connection error". The close is staged as RFC
9112 (9.6) asks: the answer, then this side's half of the connection (the client reads its
end), then what the client still sends is dropped unread until it closes, for at most
`request_read_timeout_s`.

It only runs under `thriftgate serve` (another server in front of the app has its own limits:
nginx's client_header_timeout and send_timeout, gunicorn's).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.settings import Settings

log = logging.getLogger("thriftgate.api")


# Past SizeGuard's exact limit by more than one read (uvloop reads at most 256 KiB), so a
# read that also carries a body after a small head never counts as head.
_HEAD_SLACK_BYTES = 1024 * 1024


@functools.cache
def _limits() -> tuple[float, float, int]:
    """(request_read_timeout_s, client_stall_timeout_s, max_header_bytes), read once per
    process from the environment the worker's app reads its settings from (uvicorn builds the
    protocol from an import, in each worker: nothing can be passed in)."""
    settings = Settings()
    return (
        settings.request_read_timeout_s,
        settings.client_stall_timeout_s,
        settings.max_header_bytes,
    )


def _error_response(status: str, message: str, code: str) -> bytes:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    body = orjson.dumps({"error": error})
    head = (
        f"HTTP/1.1 {status}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _StagedCloseTransport:
    """The connection's transport as uvicorn sees it: `close()` with a request body still
    arriving hands the connection to its protocol's staged close instead."""

    def __init__(self, transport: asyncio.Transport, protocol: GuardedHttpProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._closing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._closing or self._transport.is_closing()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        transport = self._transport
        if (
            self._protocol.body_unread()
            and not transport.is_closing()
            and transport.can_write_eof()
        ):
            self._protocol.linger(transport)
        else:
            transport.close()


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the deadlines and the staged close described above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timeout_s, self._stall_timeout_s, self._max_header_bytes = _limits()
        self._head_cap_bytes = self._max_header_bytes + _HEAD_SLACK_BYTES
        self._head_timer: asyncio.TimerHandle | None = None
        self._idle_timer = False  # the timer running is the idle one after an answered request
        self._head_begun = False
        self._awaiting_head = True  # no head yet, or the last request's body has ended
        self._head_bytes = 0  # received while awaiting the head
        self._unread_timer: asyncio.TimerHandle | None = None
        self._unread_bytes = 0  # the write buffer's size when it last shrank
        self._unread_since = 0.0  # and when that was
        self._linger_timer: asyncio.TimerHandle | None = None
        self._lingering_on: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_StagedCloseTransport(transport, self))  # type: ignore[arg-type]
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        self._disarm_unread_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        super().connection_lost(exc)

    # -- closing on a body not read ---------------------------------------------------------

    def body_unread(self) -> bool:
        """A request's head is in and its body has not ended."""
        return not self._awaiting_head

    def linger(self, transport: asyncio.Transport) -> None:
        """Send the end of this side after the answer and drop what the client still sends
        (`data_received`) until it closes (the transport then closes itself) or the timeout."""
        self._disarm_head_timer()
        transport.write_eof()
        transport.resume_reading()  # uvicorn pauses reading a body its app did not read
        self._linger_timer = self.loop.call_later(self._head_timeout_s, transport.close)
        self._lingering_on = transport

    def shutdown(self) -> None:
        if self._lingering_on is not None:  # the server's shutdown waits for no dropped body
            self._lingering_on.close()
            return
        super().shutdown()

    # -- the request head ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_begun = True
        if self._head_timer is None or self._idle_timer:  # a next request on a kept-alive
            self._arm_head_timer()  # connection: its head has the whole timeout from here

    def data_received(self, data: bytes) -> None:
        if self._lingering_on is not None:
            return  # the rest of a body whose answer has been sent, and the connection closed
        if self._awaiting_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._awaiting_head and self._head_bytes > self._head_cap_bytes:
            # httptools keeps a head until it ends, however long (SizeGuard's 431 comes only
            # then): 1.2 GB of headers in 4 s took the worker's RSS from 0.7 to 1.8 GB
            self._refuse_head(
                "431 Request Header Fields Too Large",
                f"The request headers exceed the limit of {self._max_header_bytes} bytes.",
                "headers_too_large",
            )

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        self._head_begun = False
        self._awaiting_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        cycle = self.cycle
        if cycle is not None and cycle.response_complete and cycle.more_body:
            # answered before its body was in (a 401, a 413...): uvicorn reads the rest to
            # drop it, and each byte disarmed its keep-alive timeout, so a client without a key
            # trickling a declared body held the connection for ever. The rest has the timeout.
            self._arm_head_timer()

    def on_message_complete(self) -> None:
        answered = self.cycle is not None and self.cycle.response_complete
        self._awaiting_head = True
        super().on_message_complete()
        if answered:  # the rest of an answered request's body: now idle, as after keep-alive
            self._arm_head_timer(idle=True)

    def _arm_head_timer(self, *, idle: bool = False) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self._head_timeout_s, self._head_timed_out)
        self._idle_timer = idle

    def _disarm_head_timer(self) -> None:
        self._idle_timer = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._head_begun:
            message = f"The request headers did not arrive whole within {self._head_timeout_s:g} s."
            self._refuse_head("408 Request Timeout", message, "request_timeout")
        elif not self.transport.is_closing():
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """What httptools cannot parse (a Content-Length beside chunked, two lengths), in
        OpenAI's error shape like every other refusal, not uvicorn's text/plain."""
        self._refuse_head(
            "400 Bad Request",
            "The request is not valid HTTP/1.1 (its framing or a header could not be parsed).",
            "invalid_http_request",
        )

    def _refuse_head(self, status: str, message: str, code: str) -> None:
        if self.transport.is_closing():
            return
        self._disarm_head_timer()
        self.transport.write(_error_response(status, message, code))
        self.transport.close()

    # -- an answer nobody reads -------------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        self._unread_bytes = self.transport.get_write_buffer_size()
        self._unread_since = self.loop.time()
        self._arm_unread_timer()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._disarm_unread_timer()

    def _arm_unread_timer(self) -> None:
        self._disarm_unread_timer()
        # checked four times per limit: cut within a quarter more than it, as streams are
        self._unread_timer = self.loop.call_later(self._stall_timeout_s / 4, self._check_unread)

    def _disarm_unread_timer(self) -> None:
        if self._unread_timer is not None:
            self._unread_timer.cancel()
            self._unread_timer = None

    def _check_unread(self) -> None:
        self._unread_timer = None
        size = self.transport.get_write_buffer_size()
        now = self.loop.time()
        # The clock runs once the app is done with the answer: a stream still being written
        # is ClientStream's to cut (a 499 row), and a client that reads what it left gets it.
        done = self.transport.is_closing() or self.cycle is None or self.cycle.response_complete
        if size < self._unread_bytes or not done:  # reading (however slowly), or not done
            self._unread_bytes, self._unread_since = size, now
        elif now - self._unread_since >= self._stall_timeout_s:
            log.warning(
                "connection from %s aborted: its client took none of %d bytes for %g s",
                self.client[0] if self.client else "?",
                size,
                self._stall_timeout_s,
            )
            self.transport.abort()
            return
        self._arm_unread_timer()
