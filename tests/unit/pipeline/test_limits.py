import pytest

from gateway.errors import RateLimited
from gateway.pipeline.limits import RateLimiter


def test_rpm_limit_then_retry_after():
    lim = RateLimiter()
    lim.check("t", rpm=3, tpm=None, tokens=10)
    lim.check("t", rpm=3, tpm=None, tokens=10)
    lim.check("t", rpm=3, tpm=None, tokens=10)
    with pytest.raises(RateLimited) as exc:
        lim.check("t", rpm=3, tpm=None, tokens=10)
    assert 1 <= int(exc.value.headers["Retry-After"]) <= 60
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
