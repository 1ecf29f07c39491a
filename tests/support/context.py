"""A minimal RequestContext for unit tests of pipeline pieces (no gateway, no database)."""

from __future__ import annotations

from typing import Any

from gateway.pipeline.context import RequestContext, TenantInfo


def bare_context(
    *, body: dict[str, Any] | None = None, flags: dict[str, Any] | None = None, **fields: Any
) -> RequestContext:
    """A chat request for model "m" by tenant "t"; `fields` override the constructor's."""
    return RequestContext(
        **{
            "request_id": "r",
            "ledger_id": "l",
            "endpoint": "chat",
            "body": body if body is not None else {},
            "tenant": TenantInfo(id="t", name="t", key_id=None, flags=flags or {}),
            "model": "m",
            **fields,
        }
    )
