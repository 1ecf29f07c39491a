"""The admin API, guarded by THRIFTGATE_ADMIN_KEY (never by a tenant key)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from gateway.accounting import reports, tenants
from gateway.api.deps import AdminDep, ServicesDep
from gateway.services import Services

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminDep])

Period = Literal["monthly", "daily", "total"]


def _no_nul(value: str) -> str:
    # Postgres text cannot hold U+0000; refuse it here rather than fail in the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
# The limits go before the NUL check: applied after it, pydantic counts "items", not characters.
KeyName = Annotated[str, StringConstraints(max_length=200), AfterValidator(_no_nul)]
# Stripped before the length check, so a blank name is refused ("dup " would list as "dup").
TenantName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_no_nul),
]


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: TenantName
    budget_usd: Decimal | None = Field(
        default=None, ge=0, lt=10**10, max_digits=20, decimal_places=10
    )  # NUMERIC(20, 10)
    budget_period: Period = "monthly"
    rpm: int | None = Field(default=None, ge=1, le=10_000_000)
    tpm: int | None = Field(default=None, ge=1, le=2_147_483_647)  # an INTEGER column
    slo_ms: int | None = Field(default=None, ge=1, le=3_600_000)
    flags: dict[str, Any] = Field(default_factory=dict)


class TenantPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: TenantName | None = None
    budget_usd: Decimal | None = Field(
        default=None, ge=0, lt=10**10, max_digits=20, decimal_places=10
    )  # NUMERIC(20, 10)
    budget_period: Period | None = None
    rpm: int | None = Field(default=None, ge=1, le=10_000_000)
    tpm: int | None = Field(default=None, ge=1, le=2_147_483_647)  # an INTEGER column
    slo_ms: int | None = Field(default=None, ge=1, le=3_600_000)
    flags: dict[str, Any] | None = None


MAX_KEY_LIFETIME_S = 10 * 365 * 86_400


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: KeyName | None = None
    # when the key stops working: a time (ISO 8601 with an offset, or Unix seconds), or a
    # lifetime from now in seconds; neither: it works until revoked
    expires_at: datetime | None = None
    expires_in_s: float | None = Field(default=None, gt=0, le=MAX_KEY_LIFETIME_S)

    @model_validator(mode="after")
    def _one_expiry(self) -> KeyCreate:
        if self.expires_at is not None and self.expires_in_s is not None:
            raise ValueError("give expires_at or expires_in_s, not both")
        return self

    def expiry(self) -> datetime | None:
        if self.expires_in_s is not None:
            return datetime.now(UTC) + timedelta(seconds=self.expires_in_s)
        return self.expires_at


def _columns(fields: dict[str, Any]) -> dict[str, Any]:
    if "slo_ms" in fields:
        fields["default_slo_ms"] = fields.pop("slo_ms")
    return fields


@router.post("/tenants", status_code=201)
async def create_tenant(body: TenantCreate, services: ServicesDep) -> dict[str, Any]:
    fields = _columns(body.model_dump(exclude={"name"}))
    return await tenants.create_tenant(services.engine, body.name, **fields)


@router.get("/tenants")
async def list_tenants(
    services: ServicesDep,
    include_deleted: bool = False,
    limit: int | None = Query(default=None, ge=1, le=10_000),
    offset: int = Query(default=0, ge=0, le=100_000_000),
) -> Response:
    """Every tenant, by name; with `limit`, a page of them and whether more follow (20k
    tenants were one 4.3 MB answer).

    Sent as built (plain JSON values already): FastAPI's encoder walked 20k tenants on the
    event loop for 0.4 s, a stall for every request that worker was serving."""
    if limit is None:
        rows = await tenants.list_tenants(services.engine, include_deleted, offset=offset)
        return JSONResponse({"data": rows})
    rows = await tenants.list_tenants(
        services.engine, include_deleted, limit=limit + 1, offset=offset
    )
    return JSONResponse({"data": rows[:limit], "has_more": len(rows) > limit})


@router.get("/tenants/{tenant_id}")
async def get_tenant(tenant_id: Text, services: ServicesDep) -> dict[str, Any]:
    return await tenants.get_tenant(services.engine, tenant_id)


@router.patch("/tenants/{tenant_id}")
async def update_tenant(
    tenant_id: Text, body: TenantPatch, services: ServicesDep
) -> dict[str, Any]:
    # exclude_unset: `{"budget_usd": null}` clears the budget; an absent field is untouched.
    changes = _columns(body.model_dump(exclude_unset=True))
    if "name" in changes and changes["name"] is None:
        changes.pop("name")
    if "budget_period" in changes and changes["budget_period"] is None:
        changes.pop("budget_period")
    result = await tenants.update_tenant(services.engine, tenant_id, changes)
    await services.keys.invalidate_everywhere(tenant_id)
    services.budgets.forget(tenant_id)
    return result


@router.delete("/tenants/{tenant_id}")
async def delete_tenant(tenant_id: Text, services: ServicesDep) -> dict[str, Any]:
    """Revoke the tenant's keys and drop its cache and stored items; its ledger rows stay."""
    return await services.delete_tenant(tenant_id)


@router.post("/tenants/{tenant_id}/keys", status_code=201)
async def create_key(
    tenant_id: Text, services: ServicesDep, body: KeyCreate | None = None
) -> dict[str, Any]:
    body = body or KeyCreate()
    return await tenants.create_key(services.engine, tenant_id, body.name, body.expiry())


@router.get("/tenants/{tenant_id}/keys")
async def list_keys(tenant_id: Text, services: ServicesDep) -> dict[str, Any]:
    await tenants.get_tenant(services.engine, tenant_id)
    return {"data": await tenants.list_keys(services.engine, tenant_id)}


@router.delete("/keys/{key_id}")
async def revoke_key(
    key_id: Text,
    services: ServicesDep,
    after_s: Annotated[float, Query(ge=0, le=tenants.MAX_REVOKE_GRACE_S, allow_inf_nan=False)] = 0,
) -> dict[str, Any]:
    """Revoke now, or `?after_s=3600` for a rotation's grace period (it works until then)."""
    result = await tenants.revoke_key(services.engine, key_id, after_s)
    await services.keys.invalidate_everywhere(result["tenant_id"])
    return result


async def _tenant_id(services: Services, tenant: str | None) -> str | None:
    """`tenant=` takes an id or a name, as everywhere else; an unknown one is a 404, not an
    empty report that looks like no spend."""
    if not tenant:
        return None
    return str((await tenants.find_tenant(services.engine, tenant))["id"])


@router.get("/spend")
async def spend(
    services: ServicesDep,
    tenant: Text | None = None,
    since: Text | None = None,
    until: Text | None = None,
    group_by: Text = "day",
) -> Response:
    start, end = reports.parse_window(since, until)
    data = await reports.spend(
        services.engine,
        tenant=await _tenant_id(services, tenant),
        since=start,
        until=end,
        group_by=group_by,
    )
    return JSONResponse({"data": data})  # plain JSON values: see list_tenants


@router.get("/requests")
async def list_requests(
    services: ServicesDep,
    tenant: Text | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=10_000_000),
    model: Text | None = None,
    deployment: Text | None = None,
    status_code: int | None = Query(default=None, ge=100, le=599),
    cache_status: Text | None = None,
    since: Text | None = None,
    until: Text | None = None,
    cursor: Text | None = None,
) -> Response:
    """Newest first. To page while requests are being served, pass each page's `next_cursor`
    as `cursor` (an `offset` counts from the newest row, which new rows move)."""
    start, end = reports.parse_window(since, until)
    data = await reports.requests(
        services.engine,
        tenant=await _tenant_id(services, tenant),
        limit=limit + 1,  # one more: whether another page follows
        offset=offset,
        filters={
            "model": model,
            "deployment": deployment,
            "status_code": status_code,
            "cache_status": cache_status,
        },
        since=start,
        until=end,
        after=cursor,
    )
    # plain JSON values: see list_tenants
    body: dict[str, Any] = {"data": data[:limit], "has_more": len(data) > limit}
    if len(data) > limit:
        body["next_cursor"] = data[limit - 1]["id"]
    complete_from = (await reports.kept_from(services.engine))[0]
    if complete_from is not None and (start is None or start < complete_from):
        # older rows were pruned (retention.py): a page of them is missing, not empty
        body["complete_from"] = complete_from.isoformat()
    return JSONResponse(body)


@router.delete("/cache")
async def purge_cache(services: ServicesDep, tenant: Text) -> dict[str, Any]:
    """Drop every cache entry of one tenant (id or name), on every replica within a second."""
    row = await tenants.find_tenant(services.engine, tenant)
    deleted = await services.cache.purge(row["id"]) if services.cache is not None else 0
    return {"tenant_id": row["id"], "deleted": deleted}


@router.get("/deployments")
async def list_deployments(services: ServicesDep) -> dict[str, Any]:
    data = []
    for dep in services.catalog.deployments.values():
        data.append(
            {
                "name": dep.name,
                "model": dep.model,
                "provider": dep.provider,
                "upstream_model": dep.served_model,
                "input_cost_per_mtok": str(dep.price.input_per_mtok),
                "output_cost_per_mtok": str(dep.price.output_per_mtok),
                # above a prompt length, every token of the request is billed at these
                "long_context_prices": [
                    {
                        "above_prompt_tokens": above,
                        "input_cost_per_mtok": str(p.input_per_mtok),
                        "output_cost_per_mtok": str(p.output_per_mtok),
                    }
                    for above, p in dep.price.long_context
                ],
                "web_search_usd_per_query": {k: str(v) for k, v in dep.price.web_search_usd},
                "price_source": dep.price_source,
            }
        )
    return {"data": data}
