"""The admin dashboard at /dashboard: server-rendered pages behind an admin-key sign-in.

Routes only parse, check the session and render; queries live in `gateway.dashboard`.
Every mutation is a POST carrying the session's CSRF token (form field or X-CSRF-Token header)
on top of the SameSite=Strict session cookie, and must come from this origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from gateway.accounting import tenants
from gateway.accounting.budgets import PERIODS
from gateway.accounting.keys import check_admin_key
from gateway.api.deps import ServicesDep, get_services
from gateway.dashboard import deployments, ledger_view, queries, views
from gateway.dashboard.sessions import (
    COOKIE,
    LOGIN_CSRF_COOKIE,
    SESSION_TTL,
    Session,
    SessionStore,
    same,
)
from gateway.dashboard.windows import RANGES, Window, window
from gateway.errors import Conflict, GatewayError, NotFound
from gateway.pipeline.concurrency import FLAG as CAP_FLAG

ROOT = Path(__file__).resolve().parents[2] / "dashboard"
STATIC = ROOT / "static"
CHART_JS = ROOT / "node_modules" / "chart.js" / "dist" / "chart.umd.min.js"
FAILED_LOGIN_DELAY_S = 0.5
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not "no-referrer": with it Chromium sends `Origin: null` on form posts, which we refuse.
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
}

router = APIRouter(prefix="/dashboard", include_in_schema=False)
templates = Jinja2Templates(directory=str(ROOT / "templates"))
templates.env.filters.update(views.FILTERS)


def _store(request: Request) -> SessionStore:
    return SessionStore(get_services(request).engine)


def _admin_key(request: Request) -> str | None:
    key = get_services(request).settings.admin_key
    return key.get_secret_value() if key is not None else None


async def current_session(request: Request) -> Session:
    """The signed-in session, or a redirect to the sign-in form."""
    admin_key = _admin_key(request)
    session = None
    if admin_key is not None:
        session = await _store(request).lookup(request.cookies.get(COOKIE), admin_key)
    if session is None:
        raise HTTPException(303, "Sign in first.", headers={"Location": "/dashboard/login"})
    return session


SessionDep = Annotated[Session, Depends(current_session)]


async def checked_session(request: Request, session: SessionDep) -> Session:
    """current_session plus the CSRF checks every mutation needs."""
    origin = request.headers.get("origin")
    # Host only, not scheme: behind a TLS proxy the app may see http while the browser says
    # https. A browser never lets a page forge its Origin header.
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, "Cross-origin request refused.")
    given = request.headers.get("x-csrf-token")
    if given is None:
        form = await request.form()
        value = form.get("csrf_token")
        given = value if isinstance(value, str) else None
    if not same(given, session.csrf_token):
        raise HTTPException(403, "Missing or stale form token: reload the page and retry.")
    return session


CheckedDep = Annotated[Session, Depends(checked_session)]


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    status_code: int = 200,
    session: Session | None = None,
) -> Response:
    context = {
        "csrf_token": session.csrf_token if session else None,
        "charts_available": CHART_JS.is_file(),
        "ranges": list(RANGES),
        **context,
    }
    return templates.TemplateResponse(
        request, name, context, status_code=status_code, headers=SECURITY_HEADERS
    )


TENANTS_PER_PAGE = 100  # /dashboard/tenants: 17k tenants on one page took 3.9 s and 7.6 MB


def _window(request: Request) -> Window:
    return window(request.query_params.get("range"), request.query_params.get("unit"))


# -- sign in / out ---------------------------------------------------------------------------


DISABLED = "The dashboard is disabled: set THRIFTGATE_ADMIN_KEY."


@router.get("/login")
async def login_form(request: Request) -> Response:
    if _admin_key(request) is None:  # said before a key is typed in, not after
        return _login_page(request, DISABLED, 403)
    return _login_page(request, None, 200)


def _login_page(request: Request, error: str | None, status_code: int) -> Response:
    token = secrets.token_urlsafe(24)
    disabled = _admin_key(request) is None
    context = {"error": error, "login_token": token, "disabled": disabled}
    response = render(request, "login.html", context, status_code)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=600,
        path="/dashboard/login",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/login")
async def login(
    request: Request,
    admin_key: Annotated[str, Form(max_length=1024)] = "",
    login_token: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    expected = _admin_key(request)
    if expected is None:
        return _login_page(request, DISABLED, 403)
    if not same(login_token, request.cookies.get(LOGIN_CSRF_COOKIE)):
        return _login_page(request, "The sign-in form expired: please try again.", 400)
    if not check_admin_key(admin_key, expected):
        await asyncio.sleep(FAILED_LOGIN_DELAY_S)  # slows guessing without blocking the loop
        return _login_page(request, "Incorrect admin key.", 401)
    token, _ = await _store(request).create(expected)
    response = RedirectResponse("/dashboard/", status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(SESSION_TTL.total_seconds()),
        path="/dashboard",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(
        LOGIN_CSRF_COOKIE, path="/dashboard/login", httponly=True, samesite="strict"
    )
    return response


@router.post("/logout")
async def logout(request: Request, session: CheckedDep) -> Response:
    await _store(request).end(session)
    response = RedirectResponse("/dashboard/login", status_code=303)
    response.delete_cookie(COOKIE, path="/dashboard", httponly=True, samesite="strict")
    return response


# -- pages -----------------------------------------------------------------------------------


@router.get("")
async def root() -> Response:
    return RedirectResponse("/dashboard/", status_code=307)


@router.get("/")
async def overview(request: Request, session: SessionDep, services: ServicesDep) -> Response:
    win = _window(request)
    ov = await queries.overview(services.engine, win)
    names = await queries.tenant_names(services.engine, ov.spend_series)
    return render(
        request,
        "overview.html",
        {
            "page": "overview",
            "window": win,
            "ov": ov,
            "names": names,
            "charts": views.overview_charts(ov, names),
        },
        session=session,
    )


@router.get("/tenants")
async def tenant_list(request: Request, session: SessionDep, services: ServicesDep) -> Response:
    win = _window(request)
    search = request.query_params.get("q", "").replace("\x00", "").strip()[:200]
    raw_page = request.query_params.get("page", "1")
    page = int(raw_page) if raw_page.isascii() and raw_page.isdigit() and len(raw_page) < 7 else 1
    page = max(page, 1)
    rows, total = await tenants.page_of_tenants(
        services.engine, offset=(page - 1) * TENANTS_PER_PAGE, limit=TENANTS_PER_PAGE, search=search
    )
    pages = max(1, -(-total // TENANTS_PER_PAGE))
    # The figures of this page's tenants only: all of them, at 20k tenants, took 4 s.
    ids = [t["id"] for t in rows]
    figures = dict(await queries.figures_by(services.engine, win, "tenant_id", ids)) if ids else {}
    budgets = await queries.budget_use(services.engine, rows, services.budgets.reservation_ttl_s)
    return render(
        request,
        "tenants.html",
        {
            "page": "tenants",
            "window": win,
            "tenants": rows,
            "total": total,
            "page_no": page,
            "pages": pages,
            "first_no": (page - 1) * TENANTS_PER_PAGE + 1,
            "search": search,
            "budgets": budgets,
            "figures": figures,
            "empty": queries.Figures(),
            "error": request.query_params.get("error"),
            "deleted": request.query_params.get("deleted") == "1",
        },
        session=session,
    )


@router.post("/tenants")
async def tenant_create(
    request: Request,
    session: CheckedDep,
    services: ServicesDep,
    name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    name = name.strip()
    if not name or "\x00" in name:
        return RedirectResponse("/dashboard/tenants?error=name", status_code=303)
    try:
        created = await tenants.create_tenant(services.engine, name)
    except GatewayError:
        return RedirectResponse("/dashboard/tenants?error=exists", status_code=303)
    return RedirectResponse(f"/dashboard/tenants/{created['id']}", status_code=303)


async def _tenant_page(
    request: Request,
    session: Session,
    services: Any,
    tenant_id: str,
    *,
    new_key: dict[str, Any] | None = None,
    form_error: str | None = None,
    status_code: int = 200,
) -> Response:
    tenant = await tenants.get_tenant(services.engine, tenant_id)
    win = _window(request)
    ov = await queries.overview(services.engine, win, tenant_id=tenant_id)
    budget = (
        await queries.budget_use(services.engine, [tenant], services.budgets.reservation_ttl_s)
    )[tenant_id]
    keys = await tenants.list_keys(services.engine, tenant_id)
    names = {tenant_id: tenant["name"]}
    return render(
        request,
        "tenant.html",
        {
            "page": "tenants",
            "window": win,
            "tenant": tenant,
            "ov": ov,
            "budget": budget,
            "keys": views.key_rows(keys),
            "periods": PERIODS,
            "new_key": new_key,
            "form_error": form_error,
            "saved": request.query_params.get("saved") == "1",
            "charts": {"spend": views.spend_chart(ov, names)},
        },
        status_code=status_code,
        session=session,
    )


async def _refused(
    request: Request, session: Session, services: Any, tenant_id: str, exc: Conflict
) -> Response:
    """A form posted for a tenant deleted meanwhile: its page, saying so (not a JSON 409)."""
    return await _tenant_page(
        request, session, services, tenant_id, form_error=exc.message, status_code=409
    )


@router.get("/tenants/{tenant_id}")
async def tenant_detail(
    request: Request, tenant_id: str, session: SessionDep, services: ServicesDep
) -> Response:
    try:
        return await _tenant_page(request, session, services, tenant_id)
    except NotFound as exc:  # a mistyped or truncated id: a page, not the API's raw JSON
        return render(request, "missing.html", {"message": exc.message}, 404, session=session)


@router.post("/tenants/{tenant_id}/keys")
async def key_create(
    request: Request,
    tenant_id: str,
    session: CheckedDep,
    services: ServicesDep,
    name: Annotated[str, Form(max_length=200)] = "",
    expires_in_days: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    try:
        days = _optional_int(expires_in_days, "Expires in (days)", MAX_KEY_DAYS)
    except ValueError as exc:
        return await _tenant_page(
            request, session, services, tenant_id, form_error=str(exc), status_code=400
        )
    expiry = datetime.now(UTC) + timedelta(days=days) if days is not None else None
    try:
        created = await tenants.create_key(
            services.engine, tenant_id, name.replace("\x00", "").strip() or None, expiry
        )
    except Conflict as exc:  # deleted meanwhile (another tab, another admin)
        return await _refused(request, session, services, tenant_id, exc)
    # Rendered, not redirected: the key is shown exactly once and never travels in a URL.
    return await _tenant_page(request, session, services, tenant_id, new_key=created)


@router.post("/tenants/{tenant_id}/delete")
async def tenant_delete(
    request: Request, tenant_id: str, session: CheckedDep, services: ServicesDep
) -> Response:
    """As `DELETE /admin/tenants/{id}`: keys revoked, cache and items dropped, spend kept."""
    try:
        await services.delete_tenant(tenant_id)
    except Conflict as exc:  # already deleted (a second click, another admin)
        return await _refused(request, session, services, tenant_id, exc)
    return RedirectResponse("/dashboard/tenants?deleted=1", status_code=303)


@router.post("/keys/{key_id}/revoke")
async def key_revoke(key_id: str, session: CheckedDep, services: ServicesDep) -> Response:
    revoked = await tenants.revoke_key(services.engine, key_id)
    await services.keys.invalidate_everywhere(revoked["tenant_id"])
    return RedirectResponse(f"/dashboard/tenants/{revoked['tenant_id']}", status_code=303)


MAX_KEY_DAYS = 3650  # as the admin API's longest lifetime


def _optional_int(raw: str, name: str, high: int) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= high:
        raise ValueError(f"{name} must be a whole number from 1 to {high:,}, or empty.")
    return int(raw)


@router.post("/tenants/{tenant_id}/settings")
async def tenant_settings(
    request: Request,
    tenant_id: str,
    session: CheckedDep,
    services: ServicesDep,
    budget_usd: Annotated[str, Form(max_length=40)] = "",
    budget_period: Annotated[str, Form(max_length=16)] = "monthly",
    rpm: Annotated[str, Form(max_length=20)] = "",
    tpm: Annotated[str, Form(max_length=20)] = "",
    slo_ms: Annotated[str, Form(max_length=20)] = "",
    max_concurrent: Annotated[str, Form(max_length=20)] = "",
    max_concurrent_shown: Annotated[str, Form(max_length=1)] = "",
) -> Response:
    try:
        if budget_period not in PERIODS:
            raise ValueError(f"Budget period must be one of {', '.join(PERIODS)}.")
        changes: dict[str, Any] = {
            "budget_usd": tenants.parse_budget(budget_usd.strip() or None),
            "budget_period": budget_period,
            "rpm": _optional_int(rpm, "Requests per minute", 10_000_000),
            "tpm": _optional_int(tpm, "Tokens per minute", 2_147_483_647),
            "default_slo_ms": _optional_int(slo_ms, "Latency SLO", 3_600_000),
        }
        capped = None
        if max_concurrent_shown:  # not on a page loaded before the field existed: kept
            cap = _optional_int(max_concurrent, "Requests in flight", 1_000_000)
            capped = {CAP_FLAG: cap or None}
    except (ValueError, GatewayError) as exc:
        message = exc.message if isinstance(exc, GatewayError) else str(exc)
        return await _tenant_page(
            request, session, services, tenant_id, form_error=message, status_code=400
        )
    try:
        await tenants.update_tenant(services.engine, tenant_id, changes, flag_changes=capped)
    except Conflict as exc:  # deleted meanwhile
        return await _refused(request, session, services, tenant_id, exc)
    # As the admin API does: cached tenant settings and the exhausted-budget flag go stale.
    await services.keys.invalidate_everywhere(tenant_id)
    services.budgets.forget(tenant_id)
    return RedirectResponse(f"/dashboard/tenants/{tenant_id}?saved=1", status_code=303)


async def _ledger_filter(request: Request, win: Window, services: Any) -> ledger_view.LedgerFilter:
    q = request.query_params
    tenant = ledger_view.clean(q.get("tenant"), tenants.NAME_MAX)
    tenant_id = None
    if tenant:
        # Typed, not picked from a list: a <select> of every tenant was 1.4 MB at 20k tenants.
        with contextlib.suppress(NotFound):
            tenant_id = (await tenants.find_tenant(services.engine, tenant))["id"]
    return ledger_view.LedgerFilter(
        since=win.since,
        tenant=tenant,
        tenant_id=tenant_id,
        model=ledger_view.clean(q.get("model")),
        deployment=ledger_view.clean(q.get("deployment")),
        status=ledger_view.clean(q.get("status"), 8),
        cache_status=ledger_view.clean(q.get("cache_status"), 16),
    )


@router.get("/requests")
async def request_log(request: Request, session: SessionDep, services: ServicesDep) -> Response:
    win = _window(request)
    f = await _ledger_filter(request, win, services)
    raw_page = request.query_params.get("page", "1")
    digits = raw_page.isascii() and raw_page.isdigit()
    number = min(int(raw_page), 100_000) if digits and int(raw_page) > 0 else 1
    rows, has_next = await ledger_view.page(services.engine, f, number)
    shown = {r["tenant_id"] for r in rows} | ({f.tenant_id} if f.tenant_id else set())
    return render(
        request,
        "requests.html",
        {
            "page": "requests",
            "window": win,
            "filter": f,
            "rows": rows,
            "number": number,
            "has_next": has_next,
            "choices": await ledger_view.choices(services.engine, win.since),
            "names": await queries.tenant_names(services.engine, shown),
            "cache_statuses": ledger_view.CACHE_STATUSES,
            "pruned_before": await ledger_view.pruned_within(services.engine, win.since),
        },
        session=session,
    )


@router.get("/requests.csv")
async def request_export(request: Request, session: SessionDep, services: ServicesDep) -> Response:
    win = _window(request)
    f = await _ledger_filter(request, win, services)
    filename = f"thriftgate-requests-{win.since:%Y%m%d}-{win.now:%Y%m%d}.csv"
    return StreamingResponse(
        ledger_view.csv_chunks(services.engine, f),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/deployments")
async def deployment_list(request: Request, session: SessionDep, services: ServicesDep) -> Response:
    win = _window(request)
    by_deployment = await queries.figures_by(services.engine, win, "deployment")
    percentiles = await deployments.latency_percentiles(services.engine, win)
    router_ = getattr(services, "router", None)
    rows = deployments.table(services.catalog, router_, by_deployment, percentiles)
    return render(
        request,
        "deployments.html",
        {"page": "deployments", "window": win, "rows": rows, "has_router": router_ is not None},
        session=session,
    )


# -- assets ----------------------------------------------------------------------------------


@router.get("/static/{name}")
async def static(name: str) -> Response:
    path = (STATIC / name).resolve()
    if path.parent != STATIC.resolve() or not path.is_file():
        raise HTTPException(404, "No such asset.")
    return FileResponse(path, headers={"Cache-Control": "no-cache"})


@router.get("/vendor/chart.js")
async def chart_js() -> Response:
    """Chart.js from dashboard/node_modules (`npm ci`); nothing third-party is in the repo."""
    if not CHART_JS.is_file():
        raise HTTPException(404, "Chart.js is not installed: run `cd dashboard && npm ci`.")
    return FileResponse(
        CHART_JS, media_type="text/javascript", headers={"Cache-Control": "no-cache"}
    )
