"""Verification of drafted tokens against the target model's logits from one forward pass.

`logits[i]` is the target's distribution for the token after position i of the verified block
(the last accepted token followed by the drafts), so `logits` has `len(drafts) + 1` rows.
Greedy verification keeps the longest prefix of drafts equal to the target's argmax, then adds
the target's own next token: the output is exactly what plain greedy decoding would produce
(given the same logits). Sampling uses speculative sampling with a point-mass draft (prompt
lookup drafts are deterministic): draw from p as plain sampling would and keep draft x if the
draw is x (probability p(x)); otherwise the draw, p with x removed, replaces it. The output
distribution is exactly p, and a seeded request draws the same tokens with or without drafts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from local_engine.sampling import probs_from_logits, sample
from local_engine.sampling_params import SamplingParams


@dataclass(frozen=True, slots=True)
class Verdict:
    tokens: list[int]  # accepted drafts followed by one token from the target
    num_accepted: int  # how many drafts were accepted (len(tokens) - 1)


def verify_greedy(drafts: Sequence[int], target_argmax: Sequence[int]) -> Verdict:
    """Longest prefix of `drafts` matching `target_argmax`, plus the target's correction/bonus."""
    if len(target_argmax) != len(drafts) + 1:
        raise ValueError("target_argmax must have len(drafts) + 1 entries")
    accepted = 0
    for draft, target in zip(drafts, target_argmax, strict=False):
        if draft != target:
            break
        accepted += 1
    return Verdict(tokens=[*drafts[:accepted], int(target_argmax[accepted])], num_accepted=accepted)


def verify_sampled(
    drafts: Sequence[int],
    logits: torch.Tensor,
    params: SamplingParams,
    generator: torch.Generator | None,
) -> Verdict:
    """Speculative sampling for deterministic drafts; `logits` is [len(drafts) + 1, vocab].

    Each position draws its token from the target exactly as plain sampling does (one draw from
    the request's generator) and keeps the draft only if the draw equals it: the draft is kept
    with probability p(x), and a rejection yields p without x, renormalised, which is the
    accept-or-resample rule's law. A seeded request thus makes the same draws however many
    drafts its steps verified, so its answer does not change with the engine's load."""
    if logits.shape[0] != len(drafts) + 1:
        raise ValueError("logits must have len(drafts) + 1 rows")
    probs = probs_from_logits(logits, params)

    def draw(position: int) -> int:
        return int(sample(probs[position : position + 1], generator)[0])

    out: list[int] = []
    for i, draft in enumerate(drafts):
        out.append(draw(i))
        if out[-1] != draft:
            return Verdict(tokens=out, num_accepted=i)
    return Verdict(tokens=[*out, draw(len(drafts))], num_accepted=len(drafts))
