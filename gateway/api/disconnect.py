"""Cancel a request's work when its client hangs up: before the answer (`DisconnectWatch`), and
while its stream is being sent (`ClientStream`).

A stream notices a closed connection on its next write (Starlette's StreamingResponse also
listens for it), but a non-stream request only writes once, at the end: without a watch, an SDK
that timed out and retried left the first attempt running upstream to the end, billed in full
and recorded as a 200 that nobody received. The watch reads the ASGI `receive` channel once the
body is in (it then yields only `http.disconnect`) and cancels the task doing the work; the
pipeline settles the request as 499 (`Pipeline.run`) and cancels the upstream attempt with it.

One small task per request; it must be stopped before a response starts (a StreamingResponse
reads `receive` itself).

A stream is sent by `ClientStream`, which watches the same way. Starlette's StreamingResponse
listens for the disconnect in an anyio task group, whose cancel is delivered only while the
streaming task waits on a future not yet done; behind a fast upstream (or the megabytes a slow
reader left in the socket buffers) the next chunk is always ready, so it never landed: the
stream was read from the upstream to its end (sends to a gone client are no-ops) and billed as
a 200 with every token, for a client that kept ten chunks. asyncio's own cancel lands at the
task's next step: the stream stops within a chunk, the upstream request is closed, and the row
is a 499 billed for what was sent.

A client that stops reading but keeps its connection open (a hung consumer) is treated the same
once a write to it has waited `client_stall_timeout_s` (THRIFTGATE_CLIENT_STALL_TIMEOUT_S,
default 120): until then the stream just waits (the gateway reads the upstream only as fast as
the client takes it), but for ever it would hold the upstream's connection and the tenant's
budget reservation. The response is left incomplete, so a client that reads again gets what was
buffered and then a cut connection, not a stream that looks whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from gateway.errors import GatewayError, NoHealthyDeployment
from gateway.pipeline.hangup import SHUTTING_DOWN, watch_client

log = logging.getLogger("thriftgate.api")


class DisconnectWatch:
    __slots__ = ("_task", "_watcher", "gone")

    def __init__(self, receive: Receive) -> None:
        self.gone = False
        self._task = asyncio.current_task()
        self._watcher = asyncio.ensure_future(self._watch(receive))
        watch_client(lambda: self.gone)  # the pipeline's verdict on a cancel (hangup.py)

    async def _watch(self, receive: Receive) -> None:
        with contextlib.suppress(Exception):  # a receive that fails tells nothing: stop watching
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.cut()
                    return

    def cut(self) -> None:
        """The client is gone (it hung up, or stopped reading): cancel the work, once."""
        if not self.gone:
            self.gone = True
            if self._task is not None:
                self._task.cancel()

    def stop(self) -> None:
        self._watcher.cancel()

    def server_stopping(self) -> GatewayError:
        """After a CancelledError that was not this watch's: the server is stopping with the
        request still running (the pipeline has settled it). Its client, still connected, gets
        a 503 to retry (elsewhere) instead of uvicorn's plain-text 500, so the cancellation is
        spent here."""
        if self._task is not None:
            self._task.uncancel()
        return NoHealthyDeployment(SHUTTING_DOWN, code="server_shutting_down")

    def settled(self) -> bool:
        """After a CancelledError: True when it was this watch's (the client left), and the
        cancellation is then spent (uncancelled), so the caller may return normally."""
        if not self.gone:
            return False
        if self._task is not None:
            self._task.uncancel()
        return True


class ClientStream(StreamingResponse):
    """A StreamingResponse that stops at once when its client hangs up (see above)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = scope["app"].state.services.settings.client_stall_timeout_s
        watch = DisconnectWatch(receive)
        clock = _SendClock(send)
        stall = asyncio.ensure_future(clock.watch(watch, limit))
        try:
            await self.stream_response(clock.send)
        except asyncio.CancelledError:
            if not watch.settled():
                raise
            if clock.stalled:
                log.warning(
                    "stream %s stopped: its client read nothing for %g s",
                    self.headers.get("x-request-id"),
                    limit,
                )
                # cut in a write, outside the stream's generators: closing them settles it
                closer = getattr(self.body_iterator, "aclose", None)
                if closer is not None:
                    await closer()
            return  # the client left: the stream's generators have settled the request
        finally:
            watch.stop()
            stall.cancel()
        if self.background is not None:
            await self.background()


class _SendClock:
    """When the write in progress began, for `watch` to see one that waits past a limit."""

    __slots__ = ("_send", "since", "stalled")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.since: float | None = None
        self.stalled = False

    async def send(self, message: Message) -> None:
        self.since = time.monotonic()
        await self._send(message)
        self.since = None

    async def watch(self, watch: DisconnectWatch, limit: float) -> None:
        """Cut the stream once one write has waited `limit` (noticed within a quarter more)."""
        while True:
            await asyncio.sleep(limit / 4)
            since = self.since
            if since is not None and time.monotonic() - since >= limit:
                self.stalled = True
                watch.cut()
                return
