"""Deleting a tenant: its keys stop working at once (another worker too), its cache and stored
Responses items go, what it was billed stays, and its name can be given to a new tenant."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    create_database,
    drop_database,
    mock_deployment,
    sdk_client,
    sql,
    wait_for,
)

pytestmark = pytest.mark.integration

ASK = [{"role": "user", "content": "What is the capital of France?"}]


def test_a_deleted_tenant_loses_keys_cache_and_items_but_keeps_its_ledger(
    gateway: GatewayServer,
) -> None:
    tid, key = gateway.new_tenant("to-delete")
    client = sdk_client(gateway, key)
    first = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ASK)
    assert first.headers["x-thriftgate-cache"] == "miss"
    again = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ASK)
    assert again.headers["x-thriftgate-cache"] == "hit-exact"
    client.responses.create(model="gpt-4o-mini", input="Say hi")
    items = "SELECT 1 FROM response_items WHERE tenant_id = $1"
    assert wait_for(lambda: sql(gateway.db_url, items, tid))

    def billed() -> int:
        q = "SELECT count(*) AS n FROM usage_ledger WHERE tenant_id = $1"
        return int(sql(gateway.db_url, q, tid)[0]["n"])

    assert wait_for(lambda: billed() >= 3)
    rows_before = billed()

    r = gateway.admin("DELETE", f"/admin/tenants/{tid}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == tid and body["deleted_at"] is not None
    assert body["name"] == f"to-delete (deleted {tid})"
    assert body["removed"]["keys_revoked"] == 1
    assert body["removed"]["cache_entries"] >= 1
    assert body["removed"]["response_items"] >= 1

    # The key is refused at once (no key-cache TTL to wait out), OpenAI-shaped.
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=ASK)
    assert refused.value.status_code == 401
    assert sql(gateway.db_url, "SELECT 1 FROM cache_entries WHERE tenant_id = $1", tid) == []
    assert sql(gateway.db_url, items, tid) == []
    # What it was billed stays, and the spend report still finds it by id.
    assert billed() == rows_before
    spend = gateway.admin("GET", "/admin/spend", params={"tenant": tid})
    assert spend.status_code == 200 and spend.json()["data"], spend.text

    listed = [t["id"] for t in gateway.admin("GET", "/admin/tenants").json()["data"]]
    assert tid not in listed
    everyone = gateway.admin("GET", "/admin/tenants", params={"include_deleted": "true"}).json()
    assert tid in [t["id"] for t in everyone["data"]]

    # A deleted tenant cannot be changed, given keys, or deleted again: 409, OpenAI-shaped.
    for method, path, kwargs in (
        ("PATCH", f"/admin/tenants/{tid}", {"json": {"rpm": 5}}),
        ("POST", f"/admin/tenants/{tid}/keys", {"json": {}}),
        ("DELETE", f"/admin/tenants/{tid}", {}),
    ):
        answer = gateway.admin(method, path, **kwargs)
        assert answer.status_code == 409, (method, answer.text)
        assert answer.json()["error"]["code"] == "tenant_deleted"

    # The name is free again; the new tenant shares nothing with the old one.
    new_tid, new_key = gateway.new_tenant("to-delete")
    assert new_tid != tid
    fresh = sdk_client(gateway, new_key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ASK
    )
    assert fresh.headers["x-thriftgate-cache"] == "miss"


def test_unknown_tenant_is_a_404(gateway: GatewayServer) -> None:
    r = gateway.admin("DELETE", "/admin/tenants/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "tenant_not_found"


def test_cli_deletion_reaches_a_running_gateway_at_once(
    tmp_path: Path, mock_upstream: MockUpstreamServer
) -> None:
    """Deleted from another process (the CLI) while a two-worker gateway serves the tenant: every
    worker refuses its key immediately (NOTIFY), and its cache is gone from memory too."""
    db = create_database("tg_tdel")
    server = GatewayServer(
        tmp_path,
        db,
        [mock_deployment("mock-mini", "gpt-4o-mini", mock_upstream)],
        workers=2,
        extra_env={"THRIFTGATE_KEY_CACHE_TTL_S": "3600"},
    )
    try:
        tid, key = server.new_tenant("cli-victim")
        client = sdk_client(server, key)
        for _ in range(6):  # both workers cache the key
            client.chat.completions.create(model="gpt-4o-mini", messages=ASK)
        env = dict(os.environ, THRIFTGATE_DATABASE_URL=db)
        refused = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "tenant", "delete", "cli-victim"],
            env=env, input="n\n", capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert refused.returncode != 0
        assert sql(db, "SELECT deleted_at FROM tenants WHERE id = $1", tid)[0]["deleted_at"] is None
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "tenant", "delete", "cli-victim", "--yes"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert '"keys_revoked": 1' in done.stdout
        for _ in range(6):
            with pytest.raises(openai.AuthenticationError):
                client.chat.completions.create(model="gpt-4o-mini", messages=ASK)
        listed = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "tenant", "list", "--include-deleted"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert f"cli-victim (deleted {tid})" in listed.stdout
    finally:
        server.stop()
        drop_database(db)
