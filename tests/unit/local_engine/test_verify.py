import pytest
import torch

from local_engine.sampling import probs_from_logits
from local_engine.sampling_params import SamplingParams
from local_engine.spec_decode.verify import verify_greedy, verify_sampled


def test_greedy_accepts_the_matching_prefix_then_corrects() -> None:
    v = verify_greedy([5, 6, 7], [5, 6, 9, 1])
    assert v.tokens == [5, 6, 9] and v.num_accepted == 2


def test_greedy_all_accepted_adds_the_bonus_token() -> None:
    v = verify_greedy([5, 6], [5, 6, 8])
    assert v.tokens == [5, 6, 8] and v.num_accepted == 2


def test_greedy_without_drafts_is_plain_decoding() -> None:
    assert verify_greedy([], [4]).tokens == [4]


def test_greedy_checks_shapes() -> None:
    with pytest.raises(ValueError):
        verify_greedy([1, 2], [1, 2])


def test_sampled_keeps_the_target_distribution() -> None:
    """Speculative sampling with a point-mass draft must leave the first token's law unchanged."""
    logits = torch.tensor([[1.0, 0.5, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
    params = SamplingParams(temperature=1.0)
    target = probs_from_logits(logits[0], params)
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(4)
    trials = 4000
    accepted = 0
    for _ in range(trials):
        v = verify_sampled([1], logits, params, gen)
        counts[v.tokens[0]] += 1
        accepted += v.num_accepted
    assert torch.allclose(counts / trials, target, atol=0.03)
    assert abs(accepted / trials - float(target[1])) < 0.03


def test_sampled_with_a_certain_target_accepts_every_matching_draft() -> None:
    logits = torch.full((3, 5), -1e4)
    logits[0, 2] = logits[1, 3] = logits[2, 4] = 10.0
    v = verify_sampled([2, 3], logits, SamplingParams(temperature=0.7), torch.Generator())
    assert v.tokens == [2, 3, 4] and v.num_accepted == 2


def test_top_p_keeps_the_smallest_sufficient_nucleus() -> None:
    probs = probs_from_logits(
        torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05])), SamplingParams(temperature=1.0, top_p=0.75)
    )
    assert probs[2] == 0 and probs[3] == 0
    assert torch.isclose(probs[0], torch.tensor(0.625))
