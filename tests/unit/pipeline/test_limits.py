import asyncio
from decimal import Decimal

import pytest

from gateway.errors import RateLimited
from gateway.pipeline.context import Reply, RequestContext, TenantInfo, Usage
from gateway.pipeline.limits import RateLimiter, RateLimitStage
from tests.support.context import bare_context


def test_rpm_limit_then_retry_after():
    lim = RateLimiter()
    lim.check("t", rpm=3, tpm=None, tokens=10)
    lim.check("t", rpm=3, tpm=None, tokens=10)
    lim.check("t", rpm=3, tpm=None, tokens=10)
    with pytest.raises(RateLimited) as exc:
        lim.check("t", rpm=3, tpm=None, tokens=10)
    assert 1 <= int(exc.value.headers["Retry-After"]) <= 120  # the window slides over two buckets
    lim.check("other", rpm=3, tpm=None, tokens=10)  # tenants are independent


def test_tpm_counts_estimates_and_adjusts_to_actuals():
    lim = RateLimiter()
    lim.check("t", rpm=None, tpm=1000, tokens=900)
    with pytest.raises(RateLimited):
        lim.check("t", rpm=None, tpm=1000, tokens=200)
    lim.adjust_tokens("t", -800)  # the request really used 100
    lim.check("t", rpm=None, tpm=1000, tokens=200)


def test_a_single_request_larger_than_tpm_is_refused():
    with pytest.raises(RateLimited):
        RateLimiter().check("t", rpm=None, tpm=100, tokens=500)


@pytest.mark.parametrize(
    ("rpm", "burst", "then_wait"), [(3, 3, 0), (3, 3, 30), (10, 7, 50), (2, 2, 70)]
)
def test_retry_after_is_when_the_next_request_really_fits(
    monkeypatch: pytest.MonkeyPatch, rpm: int, burst: int, then_wait: float
) -> None:
    """A client that waits exactly Retry-After is admitted, and one second less is not
    enough: the sliding window's previous bucket still counts after the bucket rolls."""
    from gateway.pipeline import limits

    clock = [1000.0]
    monkeypatch.setattr(limits.time, "monotonic", lambda: clock[0])
    lim = RateLimiter()
    for _ in range(burst):
        lim.check("t", rpm=rpm, tpm=None, tokens=1)
    clock[0] += then_wait
    while True:  # fill up what is left, then one more is refused
        try:
            lim.check("t", rpm=rpm, tpm=None, tokens=1)
        except RateLimited as exc:
            wait = int(exc.headers["Retry-After"])
            break
    start = clock[0]
    clock[0] = start + wait - 1
    if wait > 1:
        with pytest.raises(RateLimited):
            lim.check("t", rpm=rpm, tpm=None, tokens=1)
    clock[0] = start + wait
    lim.check("t", rpm=rpm, tpm=None, tokens=1)


def _tpm_context(tpm: int, max_tokens: int) -> RequestContext:
    tenant = TenantInfo(id="t", name="t", key_id=None, tpm=tpm, budget_usd=Decimal(1))
    body = {"model": "m", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]}
    return bare_context(body=body, tenant=tenant, prompt_tokens_estimate=10)


def test_a_request_that_used_no_tokens_gives_its_tpm_charge_back() -> None:
    """Refused by the budget, or failed before anything was sent: no tokens were used, so the
    estimate charged up front comes off again (hunt9 h2: a tenant refused for its budget was
    then locked out by its TPM limit once the budget was raised, having used nothing)."""
    stage = RateLimitStage(RateLimiter())
    for _ in range(20):  # 20 x 310 tokens charged against a TPM of 1,000
        ctx = _tpm_context(1000, 300)
        asyncio.run(stage.before(ctx))
        ctx.status_code = 429  # the budget stage refused it: usage stays zero
        asyncio.run(stage.after(ctx, Reply(status_code=429)))


def test_a_tpm_refusal_gives_back_nothing_it_did_not_charge() -> None:
    stage = RateLimitStage(RateLimiter())
    first = _tpm_context(1000, 600)
    asyncio.run(stage.before(first))  # 610 in flight
    refused = _tpm_context(1000, 600)
    with pytest.raises(RateLimited):
        asyncio.run(stage.before(refused))
    asyncio.run(stage.after(refused, Reply(status_code=429)))
    with pytest.raises(RateLimited):  # the first request's 610 still count
        asyncio.run(stage.before(_tpm_context(1000, 600)))


@pytest.mark.parametrize("finished_after_s", [1.0, 59.0])
def test_a_request_in_flight_at_a_bucket_boundary_gives_back_its_unused_tokens(
    monkeypatch: pytest.MonkeyPatch, finished_after_s: float
) -> None:
    """Charged 910 tokens 0.5 s before the minute bucket rolled and used 10 (hunt10 h1): the
    refund came off the new bucket, which held nothing, so the 900 unused tokens kept counting
    through the next minute (a 500-token request refused, `Retry-After: 27`, with ~25 used)."""
    from gateway.pipeline import limits

    clock = [1000.0]
    monkeypatch.setattr(limits.time, "monotonic", lambda: clock[0])
    stage = RateLimitStage(RateLimiter())
    asyncio.run(stage.before(_tpm_context(1000, 1)))  # 11 tokens; the window starts
    clock[0] = 1059.5
    long = _tpm_context(1000, 900)
    asyncio.run(stage.before(long))  # 910 charged in the first bucket
    clock[0] = 1060.0 + finished_after_s
    asyncio.run(stage.before(_tpm_context(1000, 1)))  # another 11 rolls the window
    long.usage = Usage(prompt_tokens=10, completion_tokens=0)
    asyncio.run(stage.after(long, Reply()))
    asyncio.run(stage.before(_tpm_context(1000, 490)))  # 11 + 10 + 11 used: 500 more fit


def test_a_request_finishing_after_its_bucket_left_the_window_refunds_nothing_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway.pipeline import limits

    clock = [1000.0]
    monkeypatch.setattr(limits.time, "monotonic", lambda: clock[0])
    stage = RateLimitStage(RateLimiter())
    long = _tpm_context(1000, 900)
    asyncio.run(stage.before(long))
    clock[0] = 1130.0  # two buckets later: its charge no longer counts
    busy = _tpm_context(1000, 600)
    asyncio.run(stage.before(busy))  # 610 in the current bucket
    long.usage = Usage(prompt_tokens=10, completion_tokens=0)
    asyncio.run(stage.after(long, Reply()))  # must not take 900 off the new bucket
    with pytest.raises(RateLimited):
        asyncio.run(stage.before(_tpm_context(1000, 600)))


def test_the_other_processes_counts_are_admitted_against_and_shown():
    """limits_sync fills `others_*` with what the other processes count: a request is admitted
    against the sum, and the headers' remaining counts them (hunt11 h118)."""
    lim = RateLimiter()
    lim.others_requests["t"] = 2.0
    lim.others_tokens["t"] = 900.0
    lim.check("t", rpm=3, tpm=1000, tokens=50)  # 2 + 1 requests, 900 + 50 tokens
    h = lim.headers("t", rpm=3, tpm=1000)
    assert h["x-ratelimit-remaining-requests"] == "0"
    assert h["x-ratelimit-remaining-tokens"] == "50"
    with pytest.raises(RateLimited) as exc:
        lim.check("t", rpm=None, tpm=1000, tokens=100)
    # how the others' counts fade is not known here: a window at most, not the horizon
    assert 1 <= int(exc.value.headers["Retry-After"]) <= 60
    assert lim.usage() == {"t": (1.0, 50.0)}  # what this process writes: its own counts only
    lim.others_tokens.clear()
    lim.check("t", rpm=None, tpm=1000, tokens=100)


def test_past_its_share_of_the_room_a_process_waits_for_a_sync():
    """With 3 processes sharing a limit, one may take a fifth (rounded up) of what was left at
    the last sync before it must hear what the others took (hunt11 h118)."""
    lim = RateLimiter()
    assert not lim.past_share("t", rpm=30, tpm=None, tokens=10)  # alone: never
    lim.processes = 3
    lim.others_requests["t"] = 6.0  # room at the last sync: 24, a share of 5
    for _ in range(5):
        assert not lim.past_share("t", rpm=30, tpm=None, tokens=10)
        lim.check("t", rpm=30, tpm=None, tokens=10)
    assert lim.past_share("t", rpm=30, tpm=None, tokens=10)
    lim.synced()  # the sync: the others took 12 more meanwhile, room 7, a share of 2
    lim.others_requests["t"] = 18.0
    assert not lim.past_share("t", rpm=30, tpm=None, tokens=10)
    lim.check("t", rpm=30, tpm=None, tokens=10)
    lim.check("t", rpm=30, tpm=None, tokens=10)
    assert lim.past_share("t", rpm=30, tpm=None, tokens=10)
