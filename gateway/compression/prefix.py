"""Keep a repeated prompt prefix byte-identical to what the provider already saw.

Providers discount an exactly repeated prompt prefix (prompt caching, up to 90% off). A
conversation resends its history each turn; if the gateway compressed that history differently
each time (the query changes, so query-aware compression would), every turn would miss the
provider's cache and could cost more than it saved. `PrefixMemory` remembers, per scope (tenant
and model), the message we actually sent for each original prefix; a later request that starts
with the same original messages gets exactly those sent messages back, and only the new tail is
compressed.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import orjson

Json = dict[str, Any]


def _chain(prev: bytes, message: Json) -> bytes:
    data = orjson.dumps(message, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(prev + data, digest_size=16).digest()


class PrefixMemory:
    """A bounded LRU: (scope, hash of original messages[0..i]) -> the message i we sent."""

    def __init__(self, max_entries: int = 20_000, max_bytes: int = 64_000_000) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        # Stored serialised: nobody downstream can mutate what we remember.
        self._entries: OrderedDict[tuple[str, bytes], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # compression runs in worker threads

    def __len__(self) -> int:
        return len(self._entries)

    def recall(self, scope: str, messages: Sequence[Json]) -> list[Json]:
        """The sent versions of the longest remembered prefix of `messages` (maybe empty)."""
        out: list[Json] = []
        key = b""
        for message in messages:
            key = _chain(key, message)
            with self._lock:
                hit = self._entries.get((scope, key))
                if hit is None:
                    break
                self._entries.move_to_end((scope, key))
            out.append(orjson.loads(hit))
        return out

    def remember(
        self,
        scope: str,
        originals: Sequence[Json],
        sent: Sequence[Json],
        *,
        replace: bool = False,
    ) -> None:
        """Record what was sent for each prefix; `replace`: over what was remembered before
        (the compressor sent a new version of the prefix)."""
        key = b""
        for original, message in zip(originals, sent, strict=True):
            key = _chain(key, original)
            data = orjson.dumps(message)
            with self._lock:
                old = self._entries.get((scope, key))
                if old is not None:
                    self._entries.move_to_end((scope, key))
                    if not replace or old == data:
                        continue
                    self._bytes -= len(old)
                self._entries[(scope, key)] = data
                self._bytes += len(data)
        with self._lock:
            while self._entries and (
                len(self._entries) > self.max_entries or self._bytes > self.max_bytes
            ):
                _key, data = self._entries.popitem(last=False)
                self._bytes -= len(data)
