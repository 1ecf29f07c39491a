"""Retention: old ledger rows are pruned in batches (Postgres and SQLite, replicas at once),
while every total (/admin/spend, the dashboard's rollups, a budget counter made later) stays
what it was; SQLite's file gives the space back."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.accounting import reports, retention
from gateway.accounting.budgets import EPOCH, ensure_counter
from gateway.dashboard.queries import overview
from gateway.dashboard.seed import SeedPlan, seed_ledger
from gateway.dashboard.windows import window
from gateway.db.migrate import upgrade_head
from gateway.db.session import create_engine
from gateway.errors import InvalidRequest
from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    dashboard_session,
    mock_deployment,
    sql,
    wait_for,
)

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
TENANTS = ["ta", "tb", "tc"]
MODELS = ["m1", "m2"]
GROUPS = ("day", "hour", "model", "deployment", "tenant")


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


TENANT_ROWS = (
    "INSERT INTO tenants (id, name, budget_period, flags, created_at) VALUES "
    + ", ".join(f"('{t}', '{t}', 'total', '{{}}', '2026-01-01 00:00:00')" for t in TENANTS)
)


async def _reports(engine: Any) -> dict[str, Any]:
    """Every grouping of the whole history, one tenant's, and a window of whole days."""
    since = (NOW - timedelta(days=80)).replace(hour=0, minute=0, second=0, microsecond=0)
    out: dict[str, Any] = {}
    for group_by in GROUPS:
        out[group_by] = await reports.spend(engine, group_by=group_by)
        out[f"{group_by}-tb"] = await reports.spend(engine, group_by=group_by, tenant="tb")
        out[f"{group_by}-since"] = await reports.spend(engine, group_by=group_by, since=since)
        # whole hours before the horizon, any instant after it
        out[f"{group_by}-hours"] = await reports.spend(
            engine, group_by=group_by, since=since + timedelta(hours=5), until=NOW
        )
    return out


async def _counter_from_scratch(engine: Any, tenant: str) -> Decimal:
    """What a tenant given a total budget now finds counted (its counter is made then)."""
    async with engine.begin() as conn:
        await conn.exec_driver_sql(f"DELETE FROM budget_counters WHERE tenant_id = '{tenant}'")
        await ensure_counter(conn, tenant, EPOCH)
        spent = (
            await conn.exec_driver_sql(
                f"SELECT spent_usd FROM budget_counters WHERE tenant_id = '{tenant}'"
            )
        ).scalar_one()
    return Decimal(str(spent))


def test_postgres_pruning_keeps_every_total(fresh_pg_url: str) -> None:
    asyncio.run(upgrade_head(fresh_pg_url))
    sql(fresh_pg_url, TENANT_ROWS)
    # 6,000 requests over 120 days, ending now
    plan = SeedPlan(6000, NOW, 120 * 86400, TENANTS, MODELS, ["d1", "d2"], id_prefix="r")
    asyncio.run(seed_ledger(_dsn(fresh_pg_url), plan))
    horizon = retention.ledger_horizon(30, NOW)
    assert horizon is not None
    [old] = sql(
        fresh_pg_url, "SELECT count(*) AS n FROM usage_ledger WHERE created_at < $1", horizon
    )
    assert old["n"] > 3000

    async def go() -> None:
        engine = create_engine(fresh_pg_url)
        try:
            before = await _reports(engine)
            dash_before = await overview(engine, window("90d", now=NOW))
            counter_before = await _counter_from_scratch(engine, "tb")
            # two replicas prune at once, in small batches
            a, b = await asyncio.gather(
                retention.prune(engine, ledger_retention_days=30, now=NOW, batch_rows=400),
                retention.prune(engine, ledger_retention_days=30, now=NOW, batch_rows=400),
            )
            assert a.deleted["usage_ledger"] + b.deleted["usage_ledger"] == old["n"]
            assert await _reports(engine) == before
            assert await overview(engine, window("90d", now=NOW)) == dash_before
            assert await _counter_from_scratch(engine, "tb") == counter_before
        finally:
            await engine.dispose()

    asyncio.run(go())
    [left] = sql(fresh_pg_url, "SELECT min(created_at) AS t, count(*) AS n FROM usage_ledger")
    assert left["t"] >= horizon
    assert left["n"] == 6000 - old["n"]


def test_hourly_rollup_pruned_days_are_answered_from_the_daily_one(fresh_pg_url: str) -> None:
    asyncio.run(upgrade_head(fresh_pg_url))
    sql(fresh_pg_url, TENANT_ROWS)
    plan = SeedPlan(4000, NOW, 120 * 86400, TENANTS, MODELS, ["d1", "d2"], id_prefix="h")
    asyncio.run(seed_ledger(_dsn(fresh_pg_url), plan))
    hourly_horizon = retention.ledger_horizon(40, NOW)
    assert hourly_horizon is not None

    async def go() -> None:
        engine = create_engine(fresh_pg_url)
        try:
            by = {g: await reports.spend(engine, group_by=g) for g in GROUPS if g != "hour"}
            dash = {r: await overview(engine, window(r, now=NOW)) for r in ("7d", "90d")}
            result = await retention.prune(
                engine, ledger_retention_days=20, hourly_rollup_retention_days=40, now=NOW
            )
            assert result.deleted["usage_rollup_hourly"] > 1000
            assert {g: await reports.spend(engine, group_by=g) for g in by} == by
            assert {r: await overview(engine, window(r, now=NOW)) for r in dash} == dash
            with pytest.raises(InvalidRequest) as hourly:
                await reports.spend(engine, group_by="hour")
            assert hourly.value.param == "group_by"
            assert "THRIFTGATE_ROLLUP_HOURLY_RETENTION_DAYS" in hourly.value.message
            with pytest.raises(InvalidRequest) as mid_day:
                await reports.spend(engine, since=hourly_horizon - timedelta(hours=3))
            assert mid_day.value.param == "since"
            # from the hourly horizon on, whole hours are enough again
            since = hourly_horizon + timedelta(hours=3)
            hours = await reports.spend(engine, group_by="hour", since=since, until=NOW)
            assert hours[0]["hour"] == since.strftime("%Y-%m-%dT%H:00")
        finally:
            await engine.dispose()

    asyncio.run(go())
    [first] = sql(fresh_pg_url, "SELECT min(bucket) AS b FROM usage_rollup_hourly")
    assert first["b"] >= hourly_horizon


def test_ended_budget_counters_and_alerts_are_pruned_the_total_ones_kept(
    fresh_pg_url: str,
) -> None:
    """One counter per budgeted tenant per day (and an alert row per threshold and period)
    grew for ever; nothing reads a period's once it ended (an alert is sent only while its
    period lasts)."""
    asyncio.run(upgrade_head(fresh_pg_url))
    sql(fresh_pg_url, TENANT_ROWS)
    starts = [NOW - timedelta(days=d) for d in (0, 1, 40, 70, 400)] + [EPOCH]
    for start in starts:
        sql(
            fresh_pg_url,
            "INSERT INTO budget_counters (tenant_id, period_start, spent_usd, reserved_usd, "
            "updated_at) VALUES ('tc', $1, 1, 0, now())",
            start,
        )
        sql(
            fresh_pg_url,
            "INSERT INTO budget_alerts (tenant_id, period_start, threshold_pct, budget_usd, "
            "spent_usd, created_at) VALUES ('tc', $1, 80, 1, 1, now())",
            start,
        )
    result = asyncio.run(_prune(fresh_pg_url, None))
    horizon = retention.counters_horizon(NOW)
    expected = sorted(s for s in starts if s >= horizon or s == EPOCH)
    for name in ("budget_counters", "budget_alerts"):
        kept = [r["period_start"] for r in sql(fresh_pg_url, f"SELECT period_start FROM {name}")]
        assert sorted(kept) == expected, name
        assert result.deleted[name] == len(starts) - len(kept) >= 2
    assert "usage_ledger" not in result.deleted  # no retention set: every row kept


def test_spend_by_tenant_across_the_horizon_names_33k_tenants(fresh_pg_url: str) -> None:
    """Tenant names were looked up with one bind parameter per tenant: past asyncpg's 32,767
    a report by tenant reaching back before the pruned rows was a 500."""
    asyncio.run(upgrade_head(fresh_pg_url))
    old = NOW - timedelta(days=60)
    sql(
        fresh_pg_url,
        "INSERT INTO tenants (id, name, budget_period, flags, created_at) "
        "SELECT 'x' || g, 'tenant ' || g, 'monthly', '{}', now() "
        "FROM generate_series(1, 33000) g",
    )
    sql(
        fresh_pg_url,
        "INSERT INTO usage_rollup_daily SELECT $1::timestamptz, 'x' || g, 'm', 'd', 1, 0, 0, 1, "
        "10, 5, 0.001, 0.002, 0, 0, 0.001, 1, 1, 5.0, 0, 0, 0 FROM generate_series(1, 33000) g",
        old.replace(hour=0, minute=0, second=0, microsecond=0),
    )
    plan = SeedPlan(10, NOW, 3600, ["x1"], ["m"], ["d"], id_prefix="n")
    asyncio.run(seed_ledger(_dsn(fresh_pg_url), plan))

    async def go() -> list[dict[str, Any]]:
        engine = create_engine(fresh_pg_url)
        try:
            return await reports.spend(engine, group_by="tenant")
        finally:
            await engine.dispose()

    report = asyncio.run(go())
    assert len(report) == 33000
    first = next(r for r in report if r["tenant"] == "x1")
    assert first["tenant_name"] == "tenant 1" and first["requests"] == 11


def test_a_purge_record_outlives_the_entries_it_hides(fresh_pg_url: str) -> None:
    """A cache row still being written when its tenant was purged survives the purge's DELETE;
    the purge record hides it from every replica's start-up load. Pruned at a week, the record
    went while such a row (a TTL up to 30 days) still lived, and a restart served it again."""
    asyncio.run(upgrade_head(fresh_pg_url))
    for days in (10, 29, 32):
        sql(
            fresh_pg_url,
            "INSERT INTO cache_purges (id, tenant_id, purged_at) VALUES ($1, 'ta', $2)",
            f"p{days}",
            NOW - timedelta(days=days),
        )
    result = asyncio.run(_prune(fresh_pg_url, None))
    kept = sorted(r["id"] for r in sql(fresh_pg_url, "SELECT id FROM cache_purges"))
    assert kept == ["p10", "p29"]
    assert result.deleted["cache_purges"] == 1


def retention_start(url: str) -> datetime:
    """The first kept ledger row's hour where the hourly rollup counts no more requests in it
    than the ledger holds, else the hour after (reports.kept_from)."""
    [first] = sql(url, "SELECT min(created_at) AS t FROM usage_ledger")
    hour = first["t"].replace(minute=0, second=0, microsecond=0)
    [row] = sql(
        url,
        "SELECT (SELECT coalesce(sum(requests), 0) FROM usage_rollup_hourly WHERE bucket = $1)"
        " AS counted, (SELECT count(*) FROM usage_ledger WHERE created_at >= $1"
        " AND created_at < $1 + interval '1 hour') AS kept",
        hour,
    )
    return hour if row["counted"] <= row["kept"] else hour + timedelta(hours=1)


async def _prune(url: str, days: int | None) -> retention.PruneResult:
    engine = create_engine(url)
    try:
        return await retention.prune(engine, ledger_retention_days=days, now=NOW)
    finally:
        await engine.dispose()


# -- SQLite, the embedded default ------------------------------------------------------------

COLUMNS = (
    "id, request_id, tenant_id, endpoint, model, deployment, status_code, stream, prompt_tokens, "
    "completion_tokens, cached_tokens, usage_source, cost_usd, counterfactual_cost_usd, "
    "saved_cache_usd, saved_compression_usd, saved_routing_usd, latency_ms, cache_status, "
    "created_at"
)


def _sqlite_seed(path: Path, n: int, days: int) -> None:
    """`n` requests over `days` days ending now, with a prompt-sized pad in request_id (rows
    of a real size, so that pruning frees pages)."""
    rows = []
    for i in range(n):
        at = NOW - timedelta(seconds=days * 86400 * i / n)
        cost = Decimal(i % 97) / 10_000
        rows.append(
            (
                f"s{i:08d}", f"req-{i}-" + "x" * 100, TENANTS[i % 3], "chat", MODELS[i % 2],
                f"d{i % 2}", 200 if i % 31 else 502, 0, 100 + i % 50, 20 + i % 9, 0, "upstream",
                str(cost), str(cost * 2), str(cost / 2), "0", str(cost / 2), 5.0 + i % 7,
                "hit-exact" if i % 11 == 0 else "miss",
                at.strftime("%Y-%m-%d %H:%M:%S.%f"),
            )
        )  # fmt: skip
    con = sqlite3.connect(path)
    try:
        con.execute(TENANT_ROWS)
        con.executemany(
            f"INSERT INTO usage_ledger ({COLUMNS}) VALUES ({', '.join('?' * 20)})", rows
        )
        con.commit()
    finally:
        con.close()


def test_sqlite_pruning_keeps_totals_and_gives_the_space_back(tmp_path: Path) -> None:
    path = tmp_path / "thriftgate.db"
    url = f"sqlite:///{path}"
    asyncio.run(upgrade_head(url))
    _sqlite_seed(path, 30_000, 100)
    horizon = retention.ledger_horizon(20, NOW)
    assert horizon is not None

    async def go() -> None:
        engine = create_engine(url)
        try:
            before = await _reports(engine)
            dash_before = await overview(engine, window("90d", now=NOW))
            counter_before = await _counter_from_scratch(engine, "tc")
            size_before = path.stat().st_size
            result = await retention.prune(engine, ledger_retention_days=20, now=NOW)
            assert result.deleted["usage_ledger"] > 20_000
            after = await _reports(engine)
            # SQLite sums money as floating point: the rollup's running sums and the ledger's
            # sum() may part in the last of ten decimals
            assert _rounded(after) == _rounded(before)
            assert await overview(engine, window("90d", now=NOW)) == dash_before
            assert abs(await _counter_from_scratch(engine, "tc") - counter_before) < Decimal("1e-8")
            # a file made by the gateway is incremental: the pages went back
            assert path.stat().st_size < size_before * 0.6
            # and the hourly sums before 40 days: the days' reports stay, hours are refused
            by_day = {g: await reports.spend(engine, group_by=g) for g in GROUPS if g != "hour"}
            pruned = await retention.prune(
                engine, ledger_retention_days=20, hourly_rollup_retention_days=40, now=NOW
            )
            assert pruned.deleted["usage_rollup_hourly"] > 1000
            assert {g: await reports.spend(engine, group_by=g) for g in by_day} == by_day
            with pytest.raises(InvalidRequest):
                await reports.spend(engine, group_by="hour")
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_sqlite_prune_never_holds_writers_behind_a_long_reader(tmp_path: Path) -> None:
    """The prune's WAL checkpoint was TRUNCATE: behind a reader that started earlier (a CSV
    export streaming a month), it waits (up to the 30 s busy timeout) and every writer, the
    ledger's flush included, waits with it."""
    path = tmp_path / "thriftgate.db"
    url = f"sqlite:///{path}"
    asyncio.run(upgrade_head(url))
    _sqlite_seed(path, 2000, 30)
    reader = sqlite3.connect(path, isolation_level=None)
    writer = sqlite3.connect(path, isolation_level=None, timeout=3, check_same_thread=False)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM usage_ledger").fetchone()  # holds its snapshot
        writer.execute("DELETE FROM usage_ledger WHERE id < 's00000100'")  # a WAL past it

        async def go() -> None:
            engine = create_engine(url)
            try:
                upkeep = asyncio.create_task(retention.give_back_space(engine))
                await asyncio.sleep(1)  # the checkpoint is under way, behind the reader
                await asyncio.to_thread(
                    writer.execute, "DELETE FROM usage_ledger WHERE id < 's00000200'"
                )
                reader.execute("COMMIT")
                await upkeep
            finally:
                await engine.dispose()

        asyncio.run(go())
    finally:
        reader.close()
        writer.close()


def _rounded(report: dict[str, Any]) -> dict[str, Any]:
    return {
        k: [
            {f: (round(Decimal(v), 8) if f.endswith("_usd") else v) for f, v in row.items()}
            for row in rows
        ]
        for k, rows in report.items()
    }


def _ledger_rows(path: Path) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute("SELECT count(*) FROM usage_ledger").fetchone()[0])
    finally:
        con.close()


def test_db_prune_cli_vacuums_an_older_sqlite_file(tmp_path: Path) -> None:
    """A file made before auto_vacuum was set keeps its size after a prune; `thriftgate db
    prune --vacuum` shrinks it (and turns it incremental)."""
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.execute("PRAGMA auto_vacuum=NONE")
    con.execute("CREATE TABLE marker (x)")  # the mode sticks once a table exists
    con.commit()
    con.close()
    url = f"sqlite:///{path}"
    asyncio.run(upgrade_head(url))
    _sqlite_seed(path, 20_000, 60)
    size_before = path.stat().st_size
    env = {**os.environ, "THRIFTGATE_DATABASE_URL": url, "THRIFTGATE_LEDGER_RETENTION_DAYS": "10"}

    def prune(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", "db", "prune", *flags],
            env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )  # fmt: skip

    # a dry run counts, and deletes nothing
    out = prune("--dry-run")
    assert out.returncode == 0, out.stderr
    would = json.loads(out.stdout)["would_delete"]["usage_ledger"]
    assert would > 10_000 and _ledger_rows(path) == 20_000
    # pruning alone leaves the file as big, and says what shrinks it
    out = prune()
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["deleted"]["usage_ledger"] == would
    assert path.stat().st_size > size_before * 0.9
    assert "thriftgate db prune --vacuum" in out.stderr
    out = prune("--vacuum")
    assert out.returncode == 0, out.stderr
    assert path.stat().st_size < size_before * 0.4
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        assert con.execute("SELECT count(*) FROM usage_ledger").fetchone()[0] < 5000
    finally:
        con.close()


# -- a running gateway -------------------------------------------------------------------------


def test_gateway_prunes_and_spend_reads_the_rollups_before_the_horizon(
    tmp_path: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer
) -> None:
    asyncio.run(upgrade_head(fresh_pg_url))
    plan = SeedPlan(3000, NOW, 60 * 86400, TENANTS, MODELS, ["d1", "d2"], id_prefix="g")
    asyncio.run(seed_ledger(_dsn(fresh_pg_url), plan))
    month = (NOW - timedelta(days=45)).replace(hour=0, minute=0, second=0, microsecond=0)
    query = {"since": month.isoformat(), "group_by": "model"}
    gw = GatewayServer(
        tmp_path,
        fresh_pg_url,
        [mock_deployment("mock-mini", "gpt-4o-mini", mock_upstream)],
        extra_env={
            "THRIFTGATE_LEDGER_RETENTION_DAYS": "7",
            "THRIFTGATE_RETENTION_INTERVAL_S": "1",
        },
    )
    try:
        horizon = retention.ledger_horizon(7)
        wait_for(
            lambda: sql(fresh_pg_url, "SELECT count(*) AS n FROM usage_ledger "
                        "WHERE created_at < $1", horizon)[0]["n"] == 0,
            timeout_s=60,
        )  # fmt: skip
        r = gw.admin("GET", "/admin/spend", params=query)
        assert r.status_code == 200, r.text
        [expected] = sql(
            fresh_pg_url,
            "SELECT sum(requests) AS n, sum(cost_usd) AS c FROM usage_rollup_daily "
            "WHERE bucket >= $1",
            month,
        )
        assert sum(row["requests"] for row in r.json()["data"]) == expected["n"] > 0
        assert sum(Decimal(row["cost_usd"]) for row in r.json()["data"]) == expected["c"]
        # what only raw rows can answer says so, instead of a report missing those days
        r = gw.admin("GET", "/admin/spend", params={**query, "group_by": "cache_status"})
        assert r.status_code == 400
        assert r.json()["error"]["param"] == "group_by"
        assert "THRIFTGATE_LEDGER_RETENTION_DAYS" in r.json()["error"]["message"]
        r = gw.admin("GET", "/admin/spend", params={"since": (month + timedelta(minutes=7))
                                                    .isoformat()})  # fmt: skip
        assert r.status_code == 400 and r.json()["error"]["param"] == "since"
        r = gw.admin("GET", "/admin/spend", params={"group_by": "cache_status",
                                                    "since": NOW.isoformat()})  # fmt: skip
        assert r.status_code == 200  # inside the kept rows: as before
        # the API's request list says from when it lists every request
        listed = gw.admin("GET", "/admin/requests", params={"since": month.isoformat()}).json()
        assert listed["complete_from"] == retention_start(fresh_pg_url).isoformat()
        assert len(listed["data"]) == 100 and listed["has_more"]
        recent = gw.admin("GET", "/admin/requests", params={"since": NOW.isoformat()}).json()
        assert "complete_from" not in recent
        # the request log says why its month starts a week ago
        dash = dashboard_session(gw)
        try:
            page = dash.get("/dashboard/requests", params={"range": "30d"})
            assert page.status_code == 200
            assert 'id="ledger-pruned"' in page.text
            assert "THRIFTGATE_LEDGER_RETENTION_DAYS" in page.text
            assert 'id="ledger-pruned"' not in dash.get("/dashboard/requests?range=24h").text
        finally:
            dash.close()
    finally:
        gw.stop()


def test_the_ledger_horizon_is_the_first_kept_hour_when_that_hour_lost_nothing(
    fresh_pg_url: str,
) -> None:
    """Where the first kept row's hour still holds every request the hourly rollup counted
    there, the ledger answers from that hour, not the next: with the first kept row in the
    current hour, the next hour is in the future, and `group_by=cache_status` (read from the
    ledger alone) was refused for today while every row of it was there."""
    asyncio.run(upgrade_head(fresh_pg_url))
    hour = NOW.replace(minute=0, second=0, microsecond=0)
    old = hour - timedelta(days=3)
    sql(fresh_pg_url, TENANT_ROWS)
    for i, at in enumerate([old, old + timedelta(minutes=1), hour, hour + timedelta(seconds=1)]):
        sql(
            fresh_pg_url,
            "INSERT INTO usage_ledger (id, request_id, tenant_id, endpoint, model, status_code, "
            "stream, prompt_tokens, completion_tokens, cached_tokens, usage_source, cost_usd, "
            "counterfactual_cost_usd, saved_cache_usd, saved_compression_usd, saved_routing_usd, "
            "latency_ms, cache_status, created_at) VALUES ($1, $1, 'ta', 'chat', 'm1', 200, "
            "false, 10, 5, 0, 'upstream', 0.001, 0.002, 0, 0, 0.001, 5, 'miss', $2)",
            f"r{i}",
            at,
        )
    sql(fresh_pg_url, "DELETE FROM usage_ledger WHERE created_at < $1", hour)  # pruned

    async def go() -> tuple[datetime | None, list[dict[str, Any]]]:
        engine = create_engine(fresh_pg_url)
        try:
            horizon = (await reports.kept_from(engine))[0]
            rows = await reports.spend(engine, group_by="cache_status", since=hour)
            return horizon, rows
        finally:
            await engine.dispose()

    horizon, rows = asyncio.run(go())
    assert horizon == hour
    assert [(r["cache_status"], r["requests"]) for r in rows] == [("miss", 2)]
    # one row of that hour gone too: the rollup answers for the hour, the ledger from the next
    sql(fresh_pg_url, "DELETE FROM usage_ledger WHERE id = 'r2'")

    async def horizon_only() -> datetime | None:
        engine = create_engine(fresh_pg_url)
        try:
            return (await reports.kept_from(engine))[0]
        finally:
            await engine.dispose()

    assert asyncio.run(horizon_only()) == hour + timedelta(hours=1)
