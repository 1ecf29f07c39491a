"""The gateway's exception tree; `gateway/api/errors.py` is the only place one becomes HTTP.

    GatewayError                      status_code, type, code (OpenAI's error shape)
    ├── AuthError                     401 invalid_api_key
    ├── PermissionDenied              403 permission_denied
    ├── NotFound                      404 not_found / model_not_found
    ├── Conflict                      409 conflict / tenant_deleted
    ├── InvalidRequest                400 invalid_request_error
    │   └── PayloadTooLarge           413 request_too_large
    ├── RateLimited                   429 rate_limit_exceeded   (Retry-After)
    ├── BudgetExceeded                429 insufficient_quota
    ├── NoHealthyDeployment           503 no_healthy_deployment
    └── UpstreamError                 502 upstream_error   (wraps the upstream's status/message)
        ├── UpstreamTimeout           504 upstream_timeout
        ├── UpstreamOverloaded        503 engine_overloaded  (a full queue; Retry-After)
        └── UpstreamRateLimited       429 rate_limit_exceeded  (the last deployment's 429)

A missed latency SLO is not an error: the fastest candidate serves and a header says so.
"""

from __future__ import annotations

from typing import Any

INTERNAL_ERROR = "The gateway hit an internal error; the request was not completed."


class GatewayError(Exception):
    status_code = 500
    type = "server_error"
    code: str | None = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class ClientGone(GatewayError):
    """The client closed the connection before its answer: nothing can be sent (the status is
    for the logs; the ledger row says 499 too)."""

    status_code = 499
    type = "invalid_request_error"
    code = "client_disconnected"

    def __init__(self) -> None:
        super().__init__("The client closed the connection before the answer was ready.")


class AuthError(GatewayError):
    status_code = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status_code = 403
    type = "invalid_request_error"
    code = "permission_denied"


class NotFound(GatewayError):
    status_code = 404
    type = "invalid_request_error"
    code = "not_found"


class Conflict(GatewayError):
    """The request is well formed but the resource's state forbids it (a deleted tenant)."""

    status_code = 409
    type = "invalid_request_error"
    code = "conflict"


class InvalidRequest(GatewayError):
    status_code = 400
    type = "invalid_request_error"
    code = "invalid_request"


def invalid_value(message: str, param: str) -> InvalidRequest:
    """A 400 for a field whose value is wrong (`code: invalid_value`, `param` naming it)."""
    return InvalidRequest(message, param=param, code="invalid_value")


class PayloadTooLarge(InvalidRequest):
    status_code = 413
    code = "request_too_large"


class RateLimited(GatewayError):
    status_code = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: float, code: str | None = None) -> None:
        seconds = max(1, int(retry_after_s + 0.999))
        headers = {"Retry-After": str(seconds)}
        if seconds >= SDK_LONGEST_WAIT_S:
            # OpenAI's SDKs wait out a Retry-After under a minute; past it they retry at once
            # (0.5 s, then 1 s) into a certain refusal, two more 429s and ledger rows for one:
            # told not to retry, the app gets this 429 and its Retry-After now
            headers["x-should-retry"] = "false"
        super().__init__(message, code=code, headers=headers)
        self.retry_after_s = retry_after_s


# The longest Retry-After that OpenAI's SDKs wait for (Python: <= 60 s, Node: < 60 s).
SDK_LONGEST_WAIT_S = 60


class BudgetExceeded(GatewayError):
    status_code = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class NoHealthyDeployment(GatewayError):
    status_code = 503
    type = "server_error"
    code = "no_healthy_deployment"


class UpstreamError(GatewayError):
    """The upstream failed; `upstream_status` is what it answered (None: no answer at all)."""

    status_code = 502
    type = "upstream_error"
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        upstream_status: int | None = None,
        code: str | None = None,
        retryable: bool = True,
    ) -> None:
        super().__init__(message, code=code)
        self.upstream_status = upstream_status
        self.retryable = retryable


class UpstreamTimeout(UpstreamError):
    status_code = 504
    code = "upstream_timeout"


class UpstreamOverloaded(UpstreamError):
    """A healthy engine whose queue is full (the local engine): busy, not broken. Dispatch falls
    back without counting it toward the breaker; as the last answer it is a 503 with a
    Retry-After, as OpenAI answers "The engine is currently overloaded" (the SDK retries it)."""

    status_code = 503
    type = "server_error"
    code = "engine_overloaded"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message, upstream_status=503, code="engine_overloaded")
        self.headers["Retry-After"] = str(retry_after_s)


class UpstreamRateLimited(UpstreamError):
    """The upstream answered 429. Dispatch falls back as for any upstream failure; when it was
    the last deployment's answer the client gets the 429 (and the upstream's Retry-After)."""

    status_code = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
