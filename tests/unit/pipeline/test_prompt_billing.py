"""Which failures bill the prompt: those after it reached an upstream that may have run it."""

from __future__ import annotations

import aiohttp
import httpx

from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.pipeline.pipeline import prompt_went_upstream


def caused_by(exc: Exception, cause: BaseException) -> Exception:
    exc.__cause__ = cause
    return exc


def test_a_timeout_waiting_for_the_answer_means_the_prompt_was_sent() -> None:
    assert prompt_went_upstream(caused_by(UpstreamTimeout("t"), TimeoutError()))
    assert prompt_went_upstream(UpstreamTimeout("t"))


def test_a_connect_timeout_or_an_error_answer_sent_nothing_billable() -> None:
    assert not prompt_went_upstream(
        caused_by(UpstreamTimeout("t"), aiohttp.ConnectionTimeoutError())
    )
    assert not prompt_went_upstream(caused_by(UpstreamTimeout("t"), httpx.ConnectTimeout("c")))
    assert not prompt_went_upstream(UpstreamError("unreachable"))
    assert not prompt_went_upstream(UpstreamError("overloaded", upstream_status=503))
