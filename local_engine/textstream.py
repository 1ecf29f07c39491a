"""Token ids -> text, one token at a time: incremental detokenization and stop sequences.

Both are pure (no model, no I/O): `IncrementalDetokenizer` only emits text once it no longer
ends in a partial UTF-8 character, and `StopMatcher` holds back any tail that could still
become a stop sequence, so streamed text never has to be taken back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Decode = Callable[[Sequence[int]], str]


class IncrementalDetokenizer:
    def __init__(self, decode: Decode) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix = 0  # start of the window decoded for context
        self._read = 0  # end of the text already emitted

    def push(self, token_id: int) -> str:
        """Add one token; returns the new text it completes (possibly empty)."""
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return after[len(before) :]
        return ""


class StopMatcher:
    """Finds the first stop sequence in streamed text; text before it is released as it's safe."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Returns text that is safe to emit; sets `stopped` when a stop sequence completed."""
        if self.stopped:
            return ""
        if not self.stops:
            return text
        buf = self._held + text
        first: int | None = None
        for stop in self.stops:
            at = buf.find(stop)
            if at != -1 and (first is None or at < first):
                first = at
        if first is not None:
            self.stopped = True
            self._held = ""
            return buf[:first]
        hold = _longest_stop_prefix_suffix(buf, self.stops)
        self._held = buf[len(buf) - hold :] if hold else ""
        return buf[: len(buf) - hold]

    def flush(self) -> str:
        """At the end of generation, held-back text was not a stop after all."""
        held, self._held = self._held, ""
        return "" if self.stopped else held


def _longest_stop_prefix_suffix(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best
