"""Token choice from logits: greedy, temperature and nucleus (top-p) sampling. Pure functions."""

from __future__ import annotations

import torch

from local_engine.sampling_params import SamplingParams


def probs_from_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Probabilities over the vocabulary (last dim) after temperature and top-p."""
    scaled = logits.float() / max(params.temperature, 1e-5)
    probs = torch.softmax(scaled, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        # Keep the smallest prefix whose mass reaches top_p (always at least one token).
        drop = (cumulative - sorted_probs) >= params.top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def sample(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row of `probs` ([rows, vocab]) -> [rows], by inverse CDF: exactly one
    uniform draw per row (a seeded generator advances by one number per token, whichever path
    chose it) and a few times cheaper than `torch.multinomial` on a 49k vocabulary."""
    cdf = torch.cumsum(probs, dim=-1)
    u = torch.rand((probs.shape[0], 1), generator=generator, dtype=cdf.dtype)
    index = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(-1)
    # Rounding may put u * total at the very end: the last token that has any probability.
    last = probs.shape[-1] - 1 - torch.argmax((probs.flip(-1) > 0).to(torch.int8), dim=-1)
    return torch.minimum(index, last)


def choose_tokens(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None
) -> torch.Tensor:
    """One token per row of `logits` ([rows, vocab]) -> [rows]."""
    if params.greedy:
        return torch.argmax(logits, dim=-1)
    return sample(probs_from_logits(logits, params), generator)
