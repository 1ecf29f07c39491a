"""Tenant names against ids: `tenant=<id or name>` must find the tenant with that id, and no
name may be taken for an id (or look the same as another name but for blanks)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting import tenants
from gateway.db.migrate import upgrade_head
from gateway.db.session import create_engine
from gateway.errors import InvalidRequest

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(fresh_pg_url: str) -> AsyncIterator[AsyncEngine]:
    await upgrade_head(fresh_pg_url)
    eng = create_engine(fresh_pg_url, pool_size=1)
    yield eng
    await eng.dispose()


async def test_an_id_finds_its_tenant_even_when_another_is_named_after_it(
    engine: AsyncEngine,
) -> None:
    victim = await tenants.create_tenant(engine, "victim")
    # A row from before names were checked: its name is the victim's id.
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO tenants (id, name, budget_period, flags, created_at) "
                "VALUES ('impostor', :name, 'monthly', '{}', now())"
            ),
            {"name": victim["id"]},
        )
    # An update moves the victim's row behind the impostor's in the heap.
    await tenants.update_tenant(engine, victim["id"], {"rpm": 100})
    for _ in range(3):
        assert (await tenants.find_tenant(engine, victim["id"]))["id"] == victim["id"]
    assert (await tenants.find_tenant(engine, "victim"))["id"] == victim["id"]


async def test_a_name_shaped_like_a_tenant_id_is_refused(engine: AsyncEngine) -> None:
    other = await tenants.create_tenant(engine, "other")
    with pytest.raises(InvalidRequest) as created:
        await tenants.create_tenant(engine, other["id"])
    assert created.value.param == "name" and "id" in created.value.message
    with pytest.raises(InvalidRequest):
        await tenants.create_tenant(engine, "0123456789ABCDEF0123456789abcdef")
    with pytest.raises(InvalidRequest):
        await tenants.update_tenant(engine, other["id"], {"name": other["id"]})
    assert (await tenants.get_tenant(engine, other["id"]))["name"] == "other"


async def test_names_are_stripped_and_a_blank_one_is_refused(engine: AsyncEngine) -> None:
    created = await tenants.create_tenant(engine, "  dup ")
    assert created["name"] == "dup"
    with pytest.raises(InvalidRequest) as again:
        await tenants.create_tenant(engine, "dup ")
    assert again.value.code == "tenant_exists"
    for blank in ("", "   ", "\t\n"):
        with pytest.raises(InvalidRequest) as refused:
            await tenants.create_tenant(engine, blank)
        assert refused.value.param == "name"
    with pytest.raises(InvalidRequest):
        await tenants.update_tenant(engine, created["id"], {"name": "  "})
    renamed = await tenants.update_tenant(engine, created["id"], {"name": " new "})
    assert renamed["name"] == "new"
