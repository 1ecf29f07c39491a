"""A 429 whose wait is longer than OpenAI's SDKs wait for tells them not to retry.

The SDKs honour a Retry-After under a minute; past it they retry after 0.5 s and 1 s, into a
refusal that is certain (the RPM window has not moved), so one refused request became three
429s and three ledger rows (found with the Node SDK and rpm=3: Retry-After 77).
"""

from __future__ import annotations

import pytest

from gateway.errors import RateLimited
from gateway.pipeline.limits import RateLimiter


@pytest.mark.parametrize(("wait_s", "retry"), [(1, True), (30, True), (59.2, False), (77, False)])
def test_a_wait_past_a_minute_says_do_not_retry(wait_s: float, retry: bool) -> None:
    exc = RateLimited("slow down", retry_after_s=wait_s)
    assert int(exc.headers["Retry-After"]) >= wait_s
    assert ("x-should-retry" not in exc.headers) is retry
    if not retry:
        assert exc.headers["x-should-retry"] == "false"


def test_an_rpm_refusal_far_from_its_window_says_do_not_retry() -> None:
    lim = RateLimiter()
    for _ in range(3):
        lim.check("t", rpm=3, tpm=None, tokens=1)
    with pytest.raises(RateLimited) as caught:
        lim.check("t", rpm=3, tpm=None, tokens=1)
    exc = caught.value
    assert int(exc.headers["Retry-After"]) >= 60
    assert exc.headers["x-should-retry"] == "false"
