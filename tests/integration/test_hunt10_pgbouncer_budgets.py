"""Budgets behind PgBouncer in session mode (hunt10 h6)."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.integration.test_hunt10_postgres_operators import (
    PRICED,
    PgBouncer,
    needs_pgbouncer,
    readyz,
)
from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    mock_deployment,
    sdk_client,
    sql,
    wait_for,
)

pytestmark = pytest.mark.integration


@needs_pgbouncer
def test_budgets_hold_behind_pgbouncer_in_session_mode(
    session_tmp: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer
) -> None:
    """The budget pool asked for `synchronous_commit` as a startup parameter, which PgBouncer
    refuses ("unsupported startup parameter"): every budget check failed, and fail-open
    served a spent tenant with /readyz ok."""
    bouncer = PgBouncer("session")
    try:
        url = bouncer.url + fresh_pg_url.rsplit("/", 1)[1]
        deps = [mock_deployment("m", "m", mock_upstream, **PRICED)]
        gw = GatewayServer(session_tmp, url, deps)
        try:
            _, key = gw.new_tenant(budget_usd="0.000005")  # one answer ($0.000006) spends it
            client = sdk_client(gw, key)
            ask = {"model": "m", "max_tokens": 20}
            client.chat.completions.create(**ask, messages=[{"role": "user", "content": "one"}])
            settled = "SELECT sum(reserved_usd + reserved_prev_usd) AS r FROM budget_counters"
            assert wait_for(lambda: sql(fresh_pg_url, settled)[0]["r"] == 0)
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(**ask, messages=[{"role": "user", "content": "two"}])
            assert "budget store unavailable" not in gw.log()
            assert wait_for(lambda: readyz(gw).json().get("key_events") == "listening", 15)
        finally:
            gw.stop()
    finally:
        bouncer.stop()
