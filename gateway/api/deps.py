"""Request-scoped dependencies: the Services object, header maps, the admin guard."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.accounting.keys import check_admin_key
from gateway.errors import AuthError, PermissionDenied
from gateway.pipeline.auth import bearer_token
from gateway.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _services_dependency(request: Request) -> Services:
    # async on purpose: FastAPI runs a sync dependency in a worker thread on every request.
    return get_services(request)


ServicesDep = Annotated[Services, Depends(_services_dependency)]


def header_map(request: Request) -> dict[str, str]:
    """Lower-cased request headers (raw ASGI list: cheaper than Starlette's Headers)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.scope["headers"]}


async def require_admin(request: Request) -> None:
    services = get_services(request)
    expected = services.settings.admin_key
    if expected is None:
        raise PermissionDenied(
            "The admin API is disabled: set THRIFTGATE_ADMIN_KEY to enable it.",
            code="admin_disabled",
        )
    given = bearer_token(request.headers.get("authorization"), request.headers.get("x-admin-key"))
    if given is None:
        raise AuthError("Missing admin key.", code="missing_api_key")
    if not check_admin_key(given, expected.get_secret_value()):
        raise AuthError("Incorrect admin key.", code="invalid_admin_key")


AdminDep = Depends(require_admin)
