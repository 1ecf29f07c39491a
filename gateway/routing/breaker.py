"""Circuit breaker per deployment: closed -> open after N consecutive failures -> half-open probe.

After `cooldown_s` an open breaker lets exactly one request through (half-open). Its success
closes the breaker; its failure re-opens it with the cool-down doubled (up to `max_cooldown_s`),
so a dead upstream costs one request per cool-down, not a stream of them. Pure and clock-driven:
callers pass `now` (monotonic seconds), which keeps it testable without sleeping.
"""

from __future__ import annotations

from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    @property
    def gauge(self) -> int:
        """Prometheus value: 0 closed, 1 half-open, 2 open."""
        return {"closed": 0, "half_open": 1, "open": 2}[self.value]


class CircuitBreaker:
    __slots__ = (
        "_cooldown_s",
        "_failures",
        "_opened_at",
        "_probe_in_flight",
        "_state",
        "base_cooldown_s",
        "failure_threshold",
        "max_cooldown_s",
        "probe_timeout_s",
    )

    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown_s: float = 10.0,
        max_cooldown_s: float = 300.0,
        probe_timeout_s: float = 120.0,
    ) -> None:
        self.failure_threshold = max(1, failure_threshold)
        self.base_cooldown_s = cooldown_s
        self.max_cooldown_s = max(cooldown_s, max_cooldown_s)
        # A probe whose outcome never arrives (cancelled request) frees the slot after this.
        self.probe_timeout_s = probe_timeout_s
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._cooldown_s = cooldown_s
        self._probe_in_flight: float | None = None

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def state(self, now: float) -> BreakerState:
        """The state as of `now` (an open breaker whose cool-down has passed reads half-open)."""
        if self._state is BreakerState.OPEN and now - self._opened_at >= self._cooldown_s:
            return BreakerState.HALF_OPEN
        return self._state

    def available(self, now: float) -> bool:
        """Whether a request may be sent now (without claiming the half-open probe)."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        return self._probe_in_flight is None or now - self._probe_in_flight >= self.probe_timeout_s

    def try_acquire(self, now: float) -> bool:
        """Claim permission to send; in half-open this takes the single probe slot."""
        if not self.available(now):
            return False
        if self.state(now) is BreakerState.HALF_OPEN:
            self._state = BreakerState.HALF_OPEN
            self._probe_in_flight = now
        return True

    def retry_in(self, now: float) -> float:
        """Seconds until a request may be sent: 0 when one may go now; for an open breaker what
        is left of its current cool-down (doubled by each failed probe, so not the base one);
        while a half-open probe is out, 1 (its outcome decides, and it is usually near)."""
        if self.available(now):
            return 0.0
        if self.state(now) is BreakerState.OPEN:
            return max(0.0, self._opened_at + self._cooldown_s - now)
        return 1.0

    def can_probe_early(self, now: float) -> bool:
        """Open, with at least the base cool-down passed and no probe out: a probe may be
        brought forward (the router does so when every available deployment is predicted to
        miss the request's SLO anyway)."""
        return (
            self._state is BreakerState.OPEN
            and now - self._opened_at >= self.base_cooldown_s
            and self._probe_in_flight is None
        )

    def probe_now(self, now: float) -> None:
        """End the cool-down now: the next `try_acquire` takes the half-open probe."""
        if self._state is BreakerState.OPEN:
            self._opened_at = min(self._opened_at, now - self._cooldown_s)

    def release(self) -> None:
        """The claimed request ended without a verdict on the upstream (e.g. client went away)."""
        self._probe_in_flight = None

    def record_success(self) -> None:
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._cooldown_s = self.base_cooldown_s
        self._probe_in_flight = None

    def record_failure(self, now: float) -> None:
        was_probe = self._state is BreakerState.HALF_OPEN
        self._probe_in_flight = None
        self._failures += 1
        if was_probe:
            self._cooldown_s = min(self._cooldown_s * 2.0, self.max_cooldown_s)
            self._trip(now)
        elif self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold:
            self._trip(now)

    def _trip(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = now
