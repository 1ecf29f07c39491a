"""Acceptance counters for speculative decoding, named like vLLM's `spec_decode_*` metrics."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SpecDecodeSnapshot:
    num_drafts: int  # verify steps that carried at least one draft
    num_draft_tokens: int
    num_accepted_tokens: int
    accepted_per_position: tuple[int, ...]

    @property
    def acceptance_rate(self) -> float | None:
        if self.num_draft_tokens == 0:
            return None
        return self.num_accepted_tokens / self.num_draft_tokens

    @property
    def mean_acceptance_length(self) -> float | None:
        """Tokens produced per verify step (accepted drafts + the target's own token)."""
        if self.num_drafts == 0:
            return None
        return 1.0 + self.num_accepted_tokens / self.num_drafts


@dataclass
class SpecDecodeCounters:
    """Written by the engine's worker thread, read by anyone; a lock keeps snapshots coherent."""

    num_drafts: int = 0
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    accepted_per_position: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def observe(self, proposed: int, accepted: int) -> None:
        if proposed <= 0:
            return
        with self._lock:
            self.num_drafts += 1
            self.num_draft_tokens += proposed
            self.num_accepted_tokens += accepted
            if len(self.accepted_per_position) < proposed:
                self.accepted_per_position.extend(
                    [0] * (proposed - len(self.accepted_per_position))
                )
            for i in range(accepted):
                self.accepted_per_position[i] += 1

    def snapshot(self) -> SpecDecodeSnapshot:
        with self._lock:
            return SpecDecodeSnapshot(
                num_drafts=self.num_drafts,
                num_draft_tokens=self.num_draft_tokens,
                num_accepted_tokens=self.num_accepted_tokens,
                accepted_per_position=tuple(self.accepted_per_position),
            )
