"""A TCP proxy in front of Postgres that a test can stall: what a database that stops answering
looks like from the gateway (a failover in progress, a network partition, a saturated server).

`stall()` stops forwarding (connections stay open, bytes wait, new connections are accepted but
not connected through); `resume()` lets everything through again. It runs in a thread with its
own event loop, so a test drives it from synchronous code.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from sqlalchemy import make_url

from tests.support.servers import free_port


class StallingProxy:
    """Forwards to the server of `db_url`; `url` is that database reached through the proxy."""

    def __init__(self, db_url: str) -> None:
        target = make_url(db_url)
        self.port = free_port()
        self._target = (target.host or "127.0.0.1", target.port or 5432)
        self.url = target.set(host="127.0.0.1", port=self.port).render_as_string(
            hide_password=False
        )
        self._loop = asyncio.new_event_loop()
        self._flowing: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            self._flowing = asyncio.Event()
            self._flowing.set()
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
            started.set()

        self._loop.run_until_complete(serve())
        self._loop.run_forever()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        self._writers.add(writer)
        await self._flowing.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    def _call(self, fn: Any) -> None:
        self._loop.call_soon_threadsafe(fn)

    def stall(self) -> None:
        assert self._flowing is not None
        self._call(self._flowing.clear)

    def resume(self) -> None:
        assert self._flowing is not None
        self._call(self._flowing.set)

    def close(self) -> None:
        def stop() -> None:
            if self._server is not None:
                self._server.close()
            for writer in self._writers:
                writer.transport.abort()
            self._loop.stop()

        self.resume()
        self._call(stop)
        self._thread.join(10)
