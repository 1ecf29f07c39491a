"""Verification of drafted tokens against the target model's logits from one forward pass.

`logits[i]` is the target's distribution for the token after position i of the verified block
(the last accepted token followed by the drafts), so `logits` has `len(drafts) + 1` rows.
Greedy verification keeps the longest prefix of drafts equal to the target's argmax, then adds
the target's own next token: the output is exactly what plain greedy decoding would produce
(given the same logits). Sampling uses speculative sampling with a point-mass draft (prompt
lookup drafts are deterministic): accept draft x with probability p(x), otherwise sample from p
with x removed, which leaves the output distribution exactly p.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from local_engine.sampling import probs_from_logits
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
    """Speculative sampling for deterministic drafts; `logits` is [len(drafts) + 1, vocab]."""
    if logits.shape[0] != len(drafts) + 1:
        raise ValueError("logits must have len(drafts) + 1 rows")
    probs = probs_from_logits(logits, params)
    out: list[int] = []
    for i, draft in enumerate(drafts):
        p = probs[i]
        u = torch.rand((), generator=generator).item()
        if u < float(p[draft]):
            out.append(int(draft))
            continue
        residual = p.clone()
        residual[draft] = 0.0
        total = float(residual.sum())
        if total <= 0.0:  # p was a point mass on the draft; cannot happen when u < 1
            out.append(int(draft))
            continue
        out.append(int(torch.multinomial(residual / total, 1, generator=generator).item()))
        return Verdict(tokens=out, num_accepted=i)
    bonus = int(torch.multinomial(probs[len(drafts)], 1, generator=generator).item())
    return Verdict(tokens=[*out, bonus], num_accepted=len(drafts))
