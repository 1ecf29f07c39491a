from __future__ import annotations

from gateway.routing.completion import MIN_RATIO_SAMPLES, CompletionLengths


def test_max_tokens_wins() -> None:
    est = CompletionLengths().estimate(max_tokens=77)
    assert (est.expected, est.high, est.source) == (77, 77, "max_tokens")


def test_default_then_learned_mean_and_high_quantile() -> None:
    lengths = CompletionLengths(default=256)
    assert lengths.estimate().source == "default"
    for i in range(200):
        lengths.observe(100 if i % 10 else 1000)  # 10% long answers
    est = lengths.estimate()
    assert est.source == "learned"
    assert 120 < est.expected < 300
    assert est.high == 1000


def test_state_round_trip() -> None:
    a = CompletionLengths()
    for n in (10, 20, 30, 40):
        a.observe(n)
    b = CompletionLengths()
    b.load_state(a.to_state())
    assert b.estimate() == a.estimate()
    b.load_state({"v": 1, "ewma": "bad"})
    assert b.estimate() == a.estimate()


def test_lengths_are_learned_per_prompt_band() -> None:
    lengths = CompletionLengths()
    for _ in range(40):
        lengths.observe(400, prompt_tokens=1000)  # band 512-1023
        lengths.observe(20, prompt_tokens=300)  # band 256-511
    assert lengths.estimate(prompt_tokens=900).expected == 400
    assert lengths.estimate(prompt_tokens=260).expected == 20
    # an unseen band falls back to the model as a whole
    assert 150 < lengths.estimate(prompt_tokens=5000).expected < 300
    assert lengths.estimate(max_tokens=64, prompt_tokens=900).source == "max_tokens"
    restored = CompletionLengths()
    restored.load_state(lengths.to_state())
    assert restored.estimate(prompt_tokens=900) == lengths.estimate(prompt_tokens=900)


def test_max_tokens_prices_the_cap_but_learns_how_much_of_it_is_used() -> None:
    lengths = CompletionLengths()
    for i in range(31):  # answers use 5-15% of a generous cap: not yet enough to rely on
        lengths.observe(200 + 10 * (i % 21), prompt_tokens=100, max_tokens=4096)
    assert lengths.estimate(max_tokens=4096) == lengths.estimate(max_tokens=4096)
    assert lengths.estimate(max_tokens=4096).high == 4096
    lengths.observe(300, prompt_tokens=100, max_tokens=4096)
    est = lengths.estimate(max_tokens=4096)
    # the cost: on the mean share of the cap (~7%), the SLO's long answer: on its p90 share
    assert est.source == "max_tokens"
    assert 250 <= est.expected <= 320
    assert 350 <= est.high <= 500
    # a smaller cap scales with it, and the long answer never exceeds the cap
    assert lengths.estimate(max_tokens=64).high <= 64
    # the learned ratios survive a restart; junk in the saved state is ignored
    restored = CompletionLengths()
    restored.load_state(lengths.to_state())
    assert restored.estimate(max_tokens=4096) == est
    restored.load_state({"v": 1, "ratios": ["x"]})
    assert restored.estimate(max_tokens=4096) == est


def test_tight_caps_keep_the_long_answer_near_the_cap() -> None:
    lengths = CompletionLengths()
    for _ in range(64):
        lengths.observe(60, prompt_tokens=100, max_tokens=64)  # answers nearly fill the cap
    assert lengths.estimate(max_tokens=64).high == 60
    assert lengths.estimate(max_tokens=1000).high >= 900


def test_each_cap_band_is_judged_on_its_own_share() -> None:
    # two clients: one fills a 64-token cap, the other uses ~5% of a 4096-token cap
    lengths = CompletionLengths()
    for i in range(64):
        lengths.observe(60, prompt_tokens=100, max_tokens=64)
        lengths.observe(180 + i, prompt_tokens=100, max_tokens=4096)
    assert lengths.estimate(max_tokens=64).high == 60
    big = lengths.estimate(max_tokens=4096)
    assert 200 <= big.expected <= 230  # priced on its own band's mean share
    assert 200 <= big.high <= 260  # judged on its own band's share, not the mixed one (~0.94)
    # a band seen too little falls back to every cap's shares
    assert lengths.estimate(max_tokens=512).high > 450
    restored = CompletionLengths()
    restored.load_state(lengths.to_state())
    assert restored.estimate(max_tokens=4096) == big
    restored.load_state({"v": 1, "cap_ratios": {"12": ["x"], "junk": [1.0]}})
    assert restored.estimate(max_tokens=4096) == big


def test_price_on_max_tokens_keeps_the_literal_rule() -> None:
    lengths = CompletionLengths(price_on_max_tokens=True)
    for _ in range(64):
        lengths.observe(100, prompt_tokens=50, max_tokens=4096)
    est = lengths.estimate(max_tokens=4096)
    assert est.expected == 4096  # priced on the cap, whatever answers use
    assert est.high == 100  # the SLO is still judged on the learned share


def test_a_fresh_router_prices_on_the_cap() -> None:
    lengths = CompletionLengths()
    for _ in range(MIN_RATIO_SAMPLES - 1):
        lengths.observe(100, prompt_tokens=50, max_tokens=4096)
    assert lengths.estimate(max_tokens=4096).expected == 4096
    lengths.observe(100, prompt_tokens=50, max_tokens=4096)
    assert lengths.estimate(max_tokens=4096).expected == 100


def test_quarter_bands_split_apps_that_share_a_power_of_two_band() -> None:
    # conv trace: 1024-1279-token prompts get ~400-token answers, 1536-2047-token ones ~85
    lengths = CompletionLengths()
    for _ in range(40):
        lengths.observe(400, prompt_tokens=1100)
        lengths.observe(85, prompt_tokens=1800)
    assert lengths.estimate(prompt_tokens=1150).high == 400
    assert lengths.estimate(prompt_tokens=1900).high == 85
    # a quarter not yet seen enough falls back to its power-of-two band (both mixed)
    assert lengths.estimate(prompt_tokens=1400).high == 400
    assert 200 < lengths.estimate(prompt_tokens=1400).expected < 300
    restored = CompletionLengths()
    restored.load_state(lengths.to_state())
    assert restored.estimate(prompt_tokens=1900) == lengths.estimate(prompt_tokens=1900)
