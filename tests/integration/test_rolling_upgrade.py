"""A rolling upgrade of replicas on one database: the first new replica migrates it, and an
older replica that restarts meanwhile (a crash, an autoscaler, a node drained) must still come
up on the schema the newer one left (migrations are additive; `known_revisions`)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.db.migrate import upgrade_head
from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    mock_deployment,
    sdk_client,
    sql,
)

pytestmark = pytest.mark.integration

NEWER = "0099_from_a_newer_gateway"


def migrated_by_a_newer_gateway(db_url: str) -> None:
    asyncio.run(upgrade_head(db_url))
    sql(db_url, f"UPDATE alembic_version SET version_num = '{NEWER}'")


def test_an_older_replica_restarting_on_a_newer_schema_serves(
    session_tmp: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer
) -> None:
    """It stopped on Alembic's "Can't locate revision identified by ..." traceback, exit 1,
    at every restart: one replica fewer for the whole upgrade, a crash loop."""
    migrated_by_a_newer_gateway(fresh_pg_url)
    gw = GatewayServer(session_tmp, fresh_pg_url, [mock_deployment("m", "m", mock_upstream)])
    try:
        _, key = gw.new_tenant(budget_usd="5")
        answer = sdk_client(gw, key).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hello"}]
        )
        assert answer.choices[0].message.content
    finally:
        gw.stop()
    log = gw.log()
    assert f"the database is at migration {NEWER}" in log
    assert "Traceback" not in log
    assert sql(fresh_pg_url, "SELECT version_num FROM alembic_version")[0][0] == NEWER


def test_migrate_with_an_older_gateway_leaves_a_newer_schema_alone(fresh_pg_url: str) -> None:
    migrated_by_a_newer_gateway(fresh_pg_url)
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "migrate"],
        env={**os.environ, "THRIFTGATE_DATABASE_URL": fresh_pg_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert f"the database is at migration {NEWER}" in out.stderr
    assert "Traceback" not in out.stderr
    assert sql(fresh_pg_url, "SELECT version_num FROM alembic_version")[0][0] == NEWER
