"""FailureLog: the first failure with its traceback, then quiet, then one line on recovery."""

from __future__ import annotations

import logging

import pytest

from gateway.db.session import FailureLog


def fail(flog: FailureLog) -> None:
    try:
        raise ConnectionRefusedError("database down")
    except ConnectionRefusedError:
        flog.failed()


def test_an_outage_logs_once_then_its_end(caplog: pytest.LogCaptureFixture) -> None:
    flog = FailureLog(logging.getLogger("test.failure_log"), "polling the table")
    caplog.set_level(logging.INFO, "test.failure_log")
    flog.succeeded()  # nothing failed: nothing to say
    for _ in range(50):
        fail(flog)
    flog.succeeded()
    flog.succeeded()
    fail(flog)  # a new outage is reported again, with its traceback
    lines = [(r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert lines[0] == ("polling the table failed", True)
    assert lines[1][0].startswith("polling the table works again after")
    assert "(50 failures)" in lines[1][0]
    assert lines[2] == ("polling the table failed", True)
    assert len(lines) == 3


def test_a_long_outage_says_so_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    flog = FailureLog(logging.getLogger("test.failure_log"), "saving", every_s=0.0)
    caplog.set_level(logging.INFO, "test.failure_log")
    fail(flog)
    fail(flog)
    second = caplog.records[1]
    assert second.exc_info is None  # no second traceback
    assert "still failing: 2 failures" in second.getMessage()
    assert "ConnectionRefusedError" in second.getMessage()
