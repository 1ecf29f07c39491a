"""The admin API while the database is away: a 503 to retry, not a 500 (hunt10 h6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_hunt10_postgres_operators import (
    as_role,
    cli,
    owner_and_app_roles,
)
from tests.support.servers import GatewayServer, MockUpstreamServer, mock_deployment, sql

pytestmark = pytest.mark.integration

__all__ = ["owner_and_app_roles"]  # the fixture, used by name


def test_the_admin_api_answers_503_while_the_database_refuses_connections(
    session_tmp: Path,
    owner_and_app_roles: tuple[str, str, str],
    mock_upstream: MockUpstreamServer,
) -> None:
    """While Postgres restarted (or ran out of connections), /admin/tenants and every other
    admin route answered 500 internal_error with a traceback each: clients and scripts do not
    retry a 500. They answer 503 database_unavailable with Retry-After, in one log line."""
    url, owner, app = owner_and_app_roles
    assert cli("migrate", db=as_role(url, owner, "?options=-csearch_path%3Dtg")).returncode == 0
    deps = [mock_deployment("m", "m", mock_upstream)]
    env = {"THRIFTGATE_MIGRATE_ON_START": "false"}
    gw = GatewayServer(
        session_tmp, as_role(url, app, "?options=-csearch_path%3Dtg"), deps, extra_env=env
    )
    try:
        assert gw.admin("GET", "/admin/tenants").status_code == 200
        sql(url, f'ALTER ROLE "{app}" CONNECTION LIMIT 0')
        sql(url, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{app}'")
        for method, path in (("GET", "/admin/tenants"), ("POST", "/admin/tenants")):
            answer = gw.admin(method, path, json={"name": "during"})
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "database_unavailable"
            assert answer.headers["retry-after"] == "2"
        assert "unhandled error" not in gw.log()
        sql(url, f'ALTER ROLE "{app}" CONNECTION LIMIT -1')
        assert gw.admin("GET", "/admin/tenants").status_code == 200
    finally:
        gw.stop()
