"""Cancel a request's work when its client hangs up before the answer (non-stream requests).

A stream notices a closed connection on its next write (Starlette's StreamingResponse also
listens for it), but a non-stream request only writes once, at the end: without a watch, an SDK
that timed out and retried left the first attempt running upstream to the end, billed in full
and recorded as a 200 that nobody received. The watch reads the ASGI `receive` channel once the
body is in (it then yields only `http.disconnect`) and cancels the task doing the work; the
pipeline settles the request as 499 (`Pipeline.run`) and cancels the upstream attempt with it.

One small task per request; it must be stopped before a response starts (a StreamingResponse
reads `receive` itself).
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import Receive


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
