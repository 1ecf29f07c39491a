"""Adaptive speculation: draft only while drafting pays, measured per sequence.

A verify step costs a little more than a plain step, so drafts that keep being rejected make
decoding slower. `AdaptiveSpeculation` tracks an exponentially weighted acceptance rate
(accepted / proposed drafts), scales the draft length with it, and pauses drafting when it
drops below the floor; after the pause it probes again, and each failed probe doubles the pause.
"""

from __future__ import annotations

import math

from local_engine.config import SpeculativeConfig


class AdaptiveSpeculation:
    def __init__(self, config: SpeculativeConfig) -> None:
        self.max_k = config.num_speculative_tokens
        self.enabled = config.adaptive
        self.floor = config.min_acceptance
        self.batched_floor = max(config.min_acceptance, config.min_acceptance_batched)
        self.alpha = config.acceptance_ewma_alpha
        self.base_pause = config.pause_steps
        self.max_pause = config.max_pause_steps
        self.acceptance = 1.0  # optimistic start: the first proposals are always tried
        self.pause_left = 0
        self.next_pause = self.base_pause
        self.paused_steps = 0

    def num_drafts(self, batched: bool = False) -> int:
        """Drafts to request for the coming step (0: decode one token plainly).

        `batched`: other rows share the step, so drafting must clear the higher batch floor.
        """
        if not self.enabled:
            return self.max_k
        if self.pause_left > 0:
            self.pause_left -= 1
            self.paused_steps += 1
            return 0
        if batched and self.acceptance < self.batched_floor:
            return 0
        return max(1, min(self.max_k, math.ceil(self.max_k * self.acceptance)))

    def record(self, proposed: int, accepted: int) -> None:
        """Feed back one verify step's result."""
        if proposed <= 0 or not self.enabled:
            return
        rate = accepted / proposed
        self.acceptance = (1 - self.alpha) * self.acceptance + self.alpha * rate
        if self.acceptance < self.floor:
            self.pause_left = self.next_pause
            self.next_pause = min(self.next_pause * 2, self.max_pause)
            # One good probe after the pause is enough to resume drafting.
            self.acceptance = self.floor
        elif rate >= self.floor:
            self.next_pause = self.base_pause
