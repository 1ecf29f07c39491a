"""Tenant and key administration, shared by the admin API and the CLI."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.budgets import PERIODS
from gateway.accounting.keys import generate_key, hash_key
from gateway.accounting.pricing import usd_text
from gateway.accounting.tenant_flags import check_flags
from gateway.db.models import ApiKey, Tenant, as_utc, new_id, table
from gateway.db.session import is_sqlite
from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.pipeline.key_events import notify

TENANT_FIELDS = ("name", "budget_usd", "budget_period", "rpm", "tpm", "default_slo_ms", "flags")
NAME_MAX = 200  # the column's length
# What `new_id()` makes: a name of this shape would be taken for an id by `find_tenant`.
ID_SHAPE = re.compile(r"[0-9a-fA-F]{32}")


def tenant_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "budget_usd": usd_text(row.budget_usd) if row.budget_usd is not None else None,
        "budget_period": row.budget_period,
        "rpm": row.rpm,
        "tpm": row.tpm,
        "slo_ms": row.default_slo_ms,
        "flags": row.flags or {},
        "created_at": _iso(row.created_at),
        "deleted_at": _iso(row.deleted_at),
    }


def key_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "tenant_id": row.tenant_id,
        "prefix": row.prefix,
        "name": row.name,
        "created_at": _iso(row.created_at),
        "revoked_at": _iso(row.revoked_at),
        "last_used_at": _iso(row.last_used_at),
        "expires_at": _iso(row.expires_at),
    }


def _iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return as_utc(ts).isoformat()


def tenant_name(name: str) -> str:
    """The name as stored: stripped, since "dup " would show as a second "dup" in every list;
    never blank; never shaped like an id, which every id-or-name lookup would take for one."""
    name = name.strip()
    if not name:
        raise InvalidRequest("'name' must not be empty or blank.", param="name")
    if ID_SHAPE.fullmatch(name):
        raise InvalidRequest(
            "'name' must not look like a tenant id (32 hexadecimal digits).", param="name"
        )
    return name


def _check(values: dict[str, Any]) -> dict[str, Any]:
    if values.get("name") is not None:
        values["name"] = tenant_name(values["name"])
    period = values.get("budget_period")
    if period is not None and period not in PERIODS:
        raise InvalidRequest(
            f"'budget_period' must be one of {list(PERIODS)}.", param="budget_period"
        )
    if values.get("flags") is not None:
        check_flags(values["flags"])
    return values


async def create_tenant(engine: AsyncEngine, name: str, **fields: Any) -> dict[str, Any]:
    values = _check({k: v for k, v in fields.items() if k in TENANT_FIELDS and v is not None})
    values.setdefault("budget_period", "monthly")
    values.setdefault("flags", {})
    name = tenant_name(name)
    tid = new_id()
    try:
        async with engine.begin() as conn:
            await conn.execute(
                table(Tenant)
                .insert()
                .values(id=tid, name=name, created_at=datetime.now(UTC), **values)
            )
    except IntegrityError:
        raise InvalidRequest(
            f"A tenant named {name!r} already exists.", param="name", code="tenant_exists"
        ) from None
    return await get_tenant(engine, tid)


async def get_tenant(engine: AsyncEngine, tenant_id: str) -> dict[str, Any]:
    if "\x00" in tenant_id:  # no id holds one, and Postgres refuses to compare with it
        raise NotFound(f"No tenant with id {tenant_id!r}.", code="tenant_not_found")
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(table(Tenant)).where(table(Tenant).c.id == tenant_id))
        ).first()
    if row is None:
        raise NotFound(f"No tenant with id {tenant_id!r}.", code="tenant_not_found")
    return tenant_dict(row)


async def find_tenant(engine: AsyncEngine, id_or_name: str) -> dict[str, Any]:
    """The tenant with this id, else the one with this name. The id wins: a tenant named like
    another's id before names were checked must not capture that id's keys, spend or cache."""
    if "\x00" in id_or_name:
        raise NotFound(f"No tenant {id_or_name!r}.", code="tenant_not_found")
    t = table(Tenant)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(t).where((t.c.id == id_or_name) | (t.c.name == id_or_name)))
        ).all()
    if not rows:
        raise NotFound(f"No tenant {id_or_name!r}.", code="tenant_not_found")
    return tenant_dict(next((r for r in rows if r.id == id_or_name), rows[0]))


async def list_tenants(
    engine: AsyncEngine, include_deleted: bool = False, *, limit: int | None = None, offset: int = 0
) -> list[dict[str, Any]]:
    """Tenants by name (then id, so pages never overlap), `limit` of them from `offset`."""
    t = table(Tenant)
    query = select(t).order_by(t.c.name, t.c.id)
    if not include_deleted:
        query = query.where(t.c.deleted_at.is_(None))
    if limit is not None:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [tenant_dict(r) for r in rows]


async def page_of_tenants(
    engine: AsyncEngine, *, offset: int, limit: int, search: str = ""
) -> tuple[list[dict[str, Any]], int]:
    """Live tenants by name, `limit` from `offset`, whose name holds `search` (any case),
    and how many there are in all."""
    t = table(Tenant)
    where = [t.c.deleted_at.is_(None)]
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(func.lower(t.c.name).like(f"%{escaped.lower()}%", escape="\\"))
    async with engine.connect() as conn:
        total = (await conn.execute(select(func.count()).select_from(t).where(*where))).scalar_one()
        rows = (
            await conn.execute(
                select(t).where(*where).order_by(t.c.name, t.c.id).offset(offset).limit(limit)
            )
        ).all()
    return [tenant_dict(r) for r in rows], int(total)


def _refuse_deleted(tenant: dict[str, Any]) -> None:
    if tenant["deleted_at"] is not None:
        raise Conflict(
            f"Tenant {tenant['id']!r} was deleted at {tenant['deleted_at']}.",
            code="tenant_deleted",
        )


async def update_tenant(
    engine: AsyncEngine,
    tenant_id: str,
    changes: dict[str, Any],
    *,
    flag_changes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Change a tenant's settings; `flag_changes` sets those flags (None: removes one) and
    keeps the others.

    Read and written under the tenant's row lock: a flag set by another admin between a read
    and this write was lost (the CLI's `--max-concurrent` wrote back the flags it had read), and
    a deletion committed meanwhile had its tenant renamed back and changed."""
    values = _check({k: v for k, v in changes.items() if k in TENANT_FIELDS})
    if "\x00" in tenant_id:
        raise NotFound(f"No tenant with id {tenant_id!r}.", code="tenant_not_found")
    t = table(Tenant)
    try:
        async with engine.begin() as conn:
            row = (
                await conn.execute(select(t).where(t.c.id == tenant_id).with_for_update())
            ).first()
            if row is None:
                raise NotFound(f"No tenant with id {tenant_id!r}.", code="tenant_not_found")
            _refuse_deleted(tenant_dict(row))
            if flag_changes:
                flags = {**(values.get("flags") or row.flags or {}), **flag_changes}
                values["flags"] = check_flags({k: v for k, v in flags.items() if v is not None})
            if values:
                await conn.execute(update(t).where(t.c.id == tenant_id).values(**values))
    except IntegrityError:
        raise InvalidRequest(
            "A tenant with that name already exists.", param="name", code="tenant_exists"
        ) from None
    return await get_tenant(engine, tenant_id)


async def create_key(
    engine: AsyncEngine,
    tenant_id: str,
    name: str | None = None,
    expires_at: datetime | None = None,
) -> dict[str, Any]:
    """A new key; with `expires_at` it stops working then (a contractor's, a CI job's key)."""
    now = datetime.now(UTC)
    if expires_at is not None:
        try:  # in UTC, as the key list says it (9999-12-31T23:59-05:00 is past datetime's end)
            expires_at = as_utc(expires_at).astimezone(UTC)
        except OverflowError:
            raise InvalidRequest(
                "The expiry is past the year 9999; give an earlier time.", param="expires_at"
            ) from None
        if expires_at <= now:
            raise InvalidRequest(
                f"The expiry {expires_at.isoformat()} has passed; give a time in the future.",
                param="expires_at",
            )
    _refuse_deleted(await get_tenant(engine, tenant_id))
    raw, prefix, digest = generate_key()
    kid = new_id()
    async with engine.begin() as conn:
        await conn.execute(
            table(ApiKey)
            .insert()
            .values(
                id=kid, tenant_id=tenant_id, hash=digest, prefix=prefix, name=name,
                created_at=now, expires_at=expires_at,
            )
        )  # fmt: skip
    return {
        "id": kid,
        "key": raw,
        "prefix": prefix,
        "tenant_id": tenant_id,
        "name": name,
        "created_at": _iso(now),
        "expires_at": _iso(expires_at),
    }


async def list_keys(engine: AsyncEngine, tenant_id: str) -> list[dict[str, Any]]:
    k = table(ApiKey)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(k).where(k.c.tenant_id == tenant_id).order_by(k.c.created_at))
        ).all()
    return [key_dict(r) for r in rows]


async def key_id_of(engine: AsyncEngine, raw_key: str) -> str:
    """The id of a key given the key itself (what a user who leaked one holds)."""
    k = table(ApiKey)
    async with engine.connect() as conn:
        found = (
            await conn.execute(select(k.c.id).where(k.c.hash == hash_key(raw_key)))
        ).scalar_one_or_none()
    if found is None:
        raise NotFound("No such key.", code="key_not_found")  # never echo the key
    return str(found)


# a revocation's grace period is for a rotation (deploy the new key, then the old one stops)
MAX_REVOKE_GRACE_S = 30 * 86_400


async def revoke_key(engine: AsyncEngine, key_id: str, after_s: float = 0) -> dict[str, Any]:
    """Revoke a key now or, with `after_s`, once that grace period has passed (the key works
    until then). A revocation never moves later: a key already revoked (or due sooner) stays.

    On Postgres every replica is told at commit (a NOTIFY in the same transaction): the CLI's
    `key revoke` has no gateway in the loop, and running replicas accepted the key until
    their key cache expired."""
    if "\x00" in key_id:
        raise NotFound(f"No key with id {key_id!r}.", code="key_not_found")
    if not 0 <= after_s <= MAX_REVOKE_GRACE_S:
        raise InvalidRequest(
            f"The grace period must be 0 to {MAX_REVOKE_GRACE_S} seconds (30 days).",
            param="after_s",
        )
    k = table(ApiKey)
    at = datetime.now(UTC) + timedelta(seconds=after_s)
    async with engine.begin() as conn:
        await conn.execute(
            update(k)
            .where(k.c.id == key_id, (k.c.revoked_at.is_(None)) | (k.c.revoked_at > at))
            .values(revoked_at=at)
        )
        row = (await conn.execute(select(k).where(k.c.id == key_id))).first()
        if row is not None and not is_sqlite(str(engine.url)):
            await notify(conn, row.tenant_id)
    if row is None:
        raise NotFound(f"No key with id {key_id!r}.", code="key_not_found")
    return key_dict(row)


MAX_BUDGET_USD = Decimal(10) ** 10


def parse_budget(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(str(value))
    except Exception:
        raise InvalidRequest("'budget_usd' must be a number.", param="budget_usd") from None
    if not amount.is_finite() or amount < 0:
        raise InvalidRequest("'budget_usd' must be a non-negative number.", param="budget_usd")
    exponent = amount.as_tuple().exponent
    if amount >= MAX_BUDGET_USD or (isinstance(exponent, int) and exponent < -10):
        # NUMERIC(20, 10): larger overflows, more decimals would round to a $0 budget
        raise InvalidRequest(
            "'budget_usd' must be below 10,000,000,000 with at most 10 decimals.",
            param="budget_usd",
        )
    return amount
