"""Requests waiting for a batch slot, queued fairly between their owners (the gateway's tenants).

One first-come queue let a tenant that sent 200 long requests hold every slot and the whole
queue, so another tenant's one-line question waited behind all of them (or was refused with the
queue full). Here each owner has its own queue, and a free slot goes to the waiting owner with
the fewest rows running (ties: the one served longest ago). While more than one owner has sent
requests lately (`RECENT_S`), the last `newcomer_slots` free slots are kept for an owner with
nothing running, so a flood can fill the batch only up to them and a newcomer starts at its
next step instead of after a long answer ends; an engine serving one tenant keeps no slot back
(one kept idle cost it an eighth of its batch). A full queue makes room for an owner with fewer
requests waiting than the longest queue by refusing that queue's newest request (it has not
started; it gets "overloaded").

Requests without an owner (`""`: the engine's own HTTP server) share one queue, and the
newcomer slots are not kept for them. Not thread-safe: the engine core holds its lock around it.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterator

from local_engine.backends.sequence import GenerationRequest
from local_engine.errors import EngineOverloaded

QUEUE_FULL = "the local engine's queue is full; retry later"
# An owner that sent a request this recently may come back: keep it a slot. An interactive
# tenant asks every few minutes; with a minute, its first question after a pause waited
# for a flood's answer to end (13 s here).
RECENT_S = 3600.0


class FairQueue:
    def __init__(self, max_queue: int, newcomer_slots: int) -> None:
        self.max_queue = max_queue
        self.newcomer_slots = newcomer_slots
        self._queues: dict[str, deque[GenerationRequest]] = {}
        self._served: dict[str, int] = {}  # owner -> when it last got a slot (a counter)
        self._clock = itertools.count(1)
        self._size = 0
        self._seen: dict[str, float] = {}  # owner -> when it last sent a request (monotonic)

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[GenerationRequest]:
        for queue in self._queues.values():
            yield from queue

    def push(self, request: GenerationRequest) -> GenerationRequest | None:
        """Queue `request`; returns a request pushed out to make room (refuse it), or raises
        EngineOverloaded when the queue is full and the owner's own queue is the longest."""
        pushed_out = None
        self._note(request.owner)
        if self._size >= self.max_queue:
            mine = len(self._queues.get(request.owner, ()))
            longest = max(self._queues, key=lambda o: len(self._queues[o]), default=None)
            if longest is None or len(self._queues[longest]) <= mine + 1:
                raise EngineOverloaded(QUEUE_FULL)
            pushed_out = self._queues[longest].pop()
            self._drop_if_empty(longest)
            self._size -= 1
        self._queues.setdefault(request.owner, deque()).append(request)
        self._size += 1
        return pushed_out

    def pop(
        self, running: dict[str, int], free_slots: int, max_prompt: int | None = None
    ) -> GenerationRequest | None:
        """The next request to start in one of `free_slots`, given each owner's running rows;
        None when nothing waits, when only owners already running wait for a newcomer slot,
        or when the next one's prompt is longer than `max_prompt` tokens."""
        if not self._queues:
            return None
        owner = min(self._queues, key=lambda o: (running.get(o, 0), self._served.get(o, 0)))
        if (
            owner
            and running.get(owner, 0)
            and free_slots <= self.newcomer_slots
            and self._others_recent(owner)
        ):
            return None  # kept for an owner with nothing running
        if max_prompt is not None and len(self._queues[owner][0].prompt_ids) > max_prompt:
            return None
        request = self._queues[owner].popleft()
        self._drop_if_empty(owner)
        self._size -= 1
        self._served[owner] = next(self._clock)
        if len(self._served) > 4 * max(1, len(self._queues)) + 64:  # forget long-gone owners
            self._served = {o: t for o, t in self._served.items() if o in self._queues}
        return request

    def _note(self, owner: str) -> None:
        now = time.monotonic()
        self._seen[owner] = now
        if len(self._seen) > 1024:  # forget owners gone quiet
            self._seen = {o: t for o, t in self._seen.items() if now - t < RECENT_S}

    def _others_recent(self, owner: str) -> bool:
        now = time.monotonic()
        return any(o != owner and now - t < RECENT_S for o, t in self._seen.items())

    def clear(self) -> list[GenerationRequest]:
        out = list(self)
        self._queues.clear()
        self._size = 0
        return out

    def _drop_if_empty(self, owner: str) -> None:
        if not self._queues[owner]:
            del self._queues[owner]
