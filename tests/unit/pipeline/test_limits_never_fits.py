"""A request that alone exceeds the tenant's TPM can never pass: its 429 must not invite a
retry (OpenAI's SDKs obey `Retry-After` and retry a 429 twice, two minutes for nothing)."""

from __future__ import annotations

import pytest

from gateway.errors import RateLimited
from gateway.pipeline.limits import RateLimiter


def _refusal(lim: RateLimiter, tokens: int) -> RateLimited:
    with pytest.raises(RateLimited) as caught:
        lim.check("t", rpm=None, tpm=300, tokens=tokens)
    return caught.value


@pytest.mark.parametrize("used_before", [0, 100])
def test_a_request_over_the_tpm_gets_no_retry_after_and_says_do_not_retry(
    used_before: int,
) -> None:
    lim = RateLimiter()
    if used_before:
        lim.check("t", rpm=None, tpm=300, tokens=used_before)
    exc = _refusal(lim, 414)
    assert "Retry-After" not in exc.headers
    assert exc.headers.get("x-should-retry") == "false"
    assert exc.status_code == 429 and exc.type == "rate_limit_error"
    assert "exceeds the limit of 300 tokens per minute" in exc.message


def test_a_request_that_fits_later_still_gets_retry_after() -> None:
    lim = RateLimiter()
    lim.check("t", rpm=None, tpm=300, tokens=250)
    exc = _refusal(lim, 100)
    wait = int(exc.headers["Retry-After"])
    assert wait >= 1  # unlike a request that never fits, it is told when
    # past the minute OpenAI's SDKs wait for, they are told not to retry at once (RateLimited)
    assert exc.headers.get("x-should-retry") == ("false" if wait >= 60 else None)
