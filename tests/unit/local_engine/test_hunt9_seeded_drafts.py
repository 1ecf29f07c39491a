"""Hunt 9 (h4): a seeded request's answer must not depend on how many drafts each step verified.

The engine drafts more or fewer tokens per step with its load (the batch shares a draft budget,
and the step width is picked from measured timings), so a seed that draws differently with
drafts gave a different answer alone and under load, even in float32.
"""

import torch

from local_engine.sampling import sample
from local_engine.sampling_params import SamplingParams
from local_engine.spec_decode.verify import verify_sampled

PARAMS = SamplingParams(temperature=1.0, seed=7)


def plain_tokens(logits: torch.Tensor) -> list[int]:
    """Non-speculative decoding: one verification of no drafts per position."""
    gen = torch.Generator().manual_seed(7)
    return [
        verify_sampled([], logits[i : i + 1], PARAMS, gen).tokens[0] for i in range(len(logits))
    ]


def test_seeded_tokens_are_the_same_with_and_without_drafts() -> None:
    torch.manual_seed(0)
    logits = torch.randn(8, 40) * 2  # position i's distribution (independent of the tokens here)
    plain = plain_tokens(logits)
    wrong = (plain[2] + 1) % 40

    gen = torch.Generator().manual_seed(7)
    all_good = verify_sampled(plain[:4], logits[:5], PARAMS, gen)  # every draft accepted + bonus
    rest = verify_sampled([wrong, 0], logits[5:8], PARAMS, gen)
    assert all_good.tokens == plain[:5] and all_good.num_accepted == 4

    gen = torch.Generator().manual_seed(7)
    first = verify_sampled([plain[0], plain[1], wrong, 0], logits[:5], PARAMS, gen)
    assert first.tokens == plain[:3] and first.num_accepted == 2  # the draw at 2 is the fix
    then = verify_sampled([], logits[3:4], PARAMS, gen)
    assert then.tokens == [plain[3]]
    assert rest.tokens[0] == plain[5]


def test_sample_follows_the_distribution_and_never_draws_a_zero() -> None:
    probs = torch.tensor([[0.0, 0.6, 0.0, 0.4, 0.0]])  # as top-p leaves it: zeros at both ends
    gen = torch.Generator().manual_seed(1)
    draws = torch.cat([sample(probs, gen) for _ in range(3000)])
    assert set(draws.tolist()) == {1, 3}
    assert abs(float((draws == 1).float().mean()) - 0.6) < 0.03
    ones = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    assert sample(ones.repeat(4, 1), gen).tolist() == [2, 2, 2, 2]
