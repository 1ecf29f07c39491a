"""A deadline for each request's head, in the HTTP protocol `thriftgate serve` runs uvicorn with.

uvicorn times out only a kept-alive connection left idle after an answer (`timeout_keep_alive`,
5 s), and the first byte of a next request disarms even that: a new connection that sends
nothing, or a request head trickled a byte every few seconds, was held for ever, by anyone,
before any key is read (slowloris). Each one is a file descriptor; past the process's
open-file limit the gateway accepts no one. Here the head (request line and headers) must be
in whole within `request_read_timeout_s` (THRIFTGATE_REQUEST_READ_TIMEOUT_S, the body's limit
too: api/guards.py) of the connection's opening, or of the next request's first byte: a head
begun gets a 408 in OpenAI's error shape, a connection that sent nothing is closed.

It only runs under `thriftgate serve` (another server in front of the app has its own limits:
nginx's client_header_timeout, gunicorn's).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.settings import Settings


@functools.cache
def _head_timeout_s() -> float:
    # Read once per process, from the environment the worker's app reads its settings from
    # (uvicorn builds the protocol from an import, in each worker: nothing can be passed in).
    return Settings().request_read_timeout_s


def _timed_out_response(timeout_s: float) -> bytes:
    message = f"The request headers did not arrive whole within {timeout_s:g} s."
    body = orjson.dumps(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": "request_timeout",
            }
        }
    )
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class HeadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the head's deadline described above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timeout_s = _head_timeout_s()
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_begun = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_begun = True
        if self._head_timer is None:  # a next request on a kept-alive connection
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        self._head_begun = False
        super().on_headers_complete()

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self._head_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_begun:
            self.transport.write(_timed_out_response(self._head_timeout_s))
        self.transport.close()
