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
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class DisconnectWatch:
    __slots__ = ("_task", "_watcher", "gone")

    def __init__(self, receive: Receive) -> None:
        self.gone = False
        self._task = asyncio.current_task()
        self._watcher = asyncio.ensure_future(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        with contextlib.suppress(Exception):  # a receive that fails tells nothing: stop watching
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.gone = True
                    if self._task is not None:
                        self._task.cancel()
                    return

    def stop(self) -> None:
        self._watcher.cancel()

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
        watch = DisconnectWatch(receive)
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            if not watch.settled():
                raise
            return  # the client left: the stream's generators have settled the request
        finally:
            watch.stop()
        if self.background is not None:
            await self.background()
