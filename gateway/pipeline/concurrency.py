"""Requests in flight per tenant, and the cap its `max_concurrent_requests` flag sets.

A tenant's buggy batch job that opens hundreds of connections at once passes any per-minute
limit for a while (each of them is one request) and, with long streams, holds the gateway's
event loop, the upstream connections and the local engine for minutes. The cap refuses what is
over it at once with a 429 (`Retry-After: 1`), which OpenAI's SDKs retry, so the job is slowed
to the cap instead of failing. Counted in each worker process, which adds the other processes'
counts as they last wrote them (limits_sync, about once a second), like RPM/TPM: over the cap
by at most what arrives elsewhere within about one sync interval.

A request's slot is given back when the pipeline settles it (its stream ended, or the client
left); a request dropped without being settled (a stream never started) gives it back when its
context is collected, so no slot is ever lost for good.
"""

from __future__ import annotations

import weakref

from gateway.errors import RateLimited
from gateway.pipeline.context import RequestContext

FLAG = "max_concurrent_requests"


class InFlight:
    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._held: dict[str, weakref.finalize[..., RequestContext]] = {}  # ledger id -> slot
        self.others: dict[str, int] = {}  # tenant -> in flight in the other processes

    def count(self, tenant_id: str) -> int:
        return self._counts.get(tenant_id, 0)

    def counts(self) -> dict[str, int]:
        """This process's requests in flight, by tenant (those with any)."""
        return dict(self._counts)

    def full(self, tenant_id: str, cap: int | None) -> bool:
        return cap is not None and self.count(tenant_id) + self.others.get(tenant_id, 0) >= cap

    def enter(self, ctx: RequestContext) -> None:
        """Take a slot for `ctx`, or raise RateLimited when its tenant holds all of them."""
        tenant_id, cap = ctx.tenant.id, cap_of(ctx.tenant.flags)
        if cap is None:
            return
        if self.full(tenant_id, cap):
            raise over_cap(cap)
        self._counts[tenant_id] = self.count(tenant_id) + 1
        self._held[ctx.ledger_id] = weakref.finalize(ctx, self._leave, tenant_id, ctx.ledger_id)

    def leave(self, ctx: RequestContext) -> None:
        """Give `ctx`'s slot back (once; nothing when it took none)."""
        slot = self._held.get(ctx.ledger_id)
        if slot is not None:
            slot()

    def _leave(self, tenant_id: str, ledger_id: str) -> None:
        self._held.pop(ledger_id, None)
        left = self.count(tenant_id) - 1
        if left > 0:
            self._counts[tenant_id] = left
        else:
            self._counts.pop(tenant_id, None)


def cap_of(flags: dict[str, object]) -> int | None:
    value = flags.get(FLAG)  # checked when set (tenant_flags): a whole number, maybe as 8.0
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 1:
        return int(value)
    return None


def over_cap(cap: int) -> RateLimited:
    return RateLimited(
        f"Too many requests in flight: this tenant may have {cap} at once "
        f"(its {FLAG} setting); retry when one has finished.",
        retry_after_s=1,
    )
