"""Whose cancel ended a request: its client's, or the server's as it stops.

A request's task is cancelled when its client hangs up (the API layer's disconnect watch) and
when the server stops with the request still running: uvicorn cancels what is left when its
graceful shutdown window (30 s) ends, and a second Ctrl-C cancels everything at once. Both were
settled as 499 `client_disconnected`, and a non-stream client still connected got uvicorn's
plain-text 500. The API layer says here, for the request's task, how to ask its watch.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

_client_left: ContextVar[Callable[[], bool] | None] = ContextVar("client_left", default=None)

SHUTTING_DOWN = "The gateway is shutting down; retry the request."


def watch_client(left: Callable[[], bool]) -> None:
    """Register, for the current request, what says whether its client hung up."""
    _client_left.set(left)


def client_left() -> bool:
    """Whether a cancel of the current request is its client's (so where nothing watches)."""
    left = _client_left.get()
    return True if left is None else left()


def cancel_verdict() -> tuple[int, str]:
    """The status and error code a cancelled request is settled with."""
    return (499, "client_disconnected") if client_left() else (503, "server_shutting_down")
