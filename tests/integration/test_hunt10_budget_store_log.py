"""A budget store that fails under fail-open is said once, with its cause (hunt10 h6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_hunt10_postgres_operators import (
    PRICED,
    as_role,
    cli,
    owner_and_app_roles,
)
from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    mock_deployment,
    sdk_client,
    sql,
)

pytestmark = pytest.mark.integration

__all__ = ["owner_and_app_roles"]  # the fixture, used by name


def test_a_failing_budget_store_is_one_line_not_one_a_request(
    session_tmp: Path,
    owner_and_app_roles: tuple[str, str, str],
    mock_upstream: MockUpstreamServer,
) -> None:
    """Each request served under fail-open logged 'budget store unavailable
    (BudgetStoreUnavailable)': 1,005 lines in 15 s of a database short of connections, none
    saying why. Here the gateway's role may not write the budget counters."""
    url, owner, app = owner_and_app_roles
    schema = "?options=-csearch_path%3Dtg"
    assert cli("migrate", db=as_role(url, owner, schema)).returncode == 0
    sql(url, f'REVOKE UPDATE, INSERT ON tg.budget_counters FROM "{app}"')
    deps = [mock_deployment("m", "m", mock_upstream, **PRICED)]
    env = {"THRIFTGATE_MIGRATE_ON_START": "false"}
    gw = GatewayServer(session_tmp, as_role(url, app, schema), deps, extra_env=env)
    try:
        _, key = gw.new_tenant(budget_usd="5")
        client = sdk_client(gw, key)
        for n in range(6):  # served: fail-open
            client.chat.completions.create(
                model="m", max_tokens=5, messages=[{"role": "user", "content": f"hi {n}"}]
            )
        lines = [line for line in gw.log().splitlines() if "budget store unavailable" in line]
        assert len(lines) == 1, lines
        assert "InsufficientPrivilege" in gw.log()  # the cause, in the first failure's trace
    finally:
        gw.stop()
