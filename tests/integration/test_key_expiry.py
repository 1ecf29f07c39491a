"""Keys that stop working on their own: an expiry set at creation, and a revocation after a
grace period (a rotation: the new key is deployed while the old one still works).

A real gateway on Postgres, its mock upstream, the official openai SDK, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openai
import pytest

from tests.support.servers import GatewayServer, MockUpstreamServer, mock_deployment, sdk_client

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gw(
    session_tmp: Path, pg_url: str, mock_upstream: MockUpstreamServer
) -> Iterator[GatewayServer]:
    # a long key cache: a key must still stop at its time, not when the cache entry lapses
    server = GatewayServer(
        session_tmp,
        pg_url,
        [mock_deployment("m1", "m", mock_upstream)],
        extra_env={"THRIFTGATE_KEY_CACHE_TTL_S": "300"},
    )
    yield server
    server.stop()


def ask(gw: GatewayServer, key: str) -> None:
    sdk_client(gw, key).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )


def new_key(gw: GatewayServer, tenant_id: str, **body: object) -> dict[str, object]:
    r = gw.admin("POST", f"/admin/tenants/{tenant_id}/keys", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def wait_until(iso: str) -> None:
    left = (datetime.fromisoformat(iso) - datetime.now(UTC)).total_seconds()
    time.sleep(max(left, 0) + 0.2)


def test_a_key_stops_at_its_expiry_with_a_message_that_says_so(gw: GatewayServer) -> None:
    tid, _ = gw.new_tenant()
    key = new_key(gw, tid, name="ci job", expires_in_s=2)
    ask(gw, str(key["key"]))  # works (and is cached for 300 s)
    wait_until(str(key["expires_at"]))
    with pytest.raises(openai.AuthenticationError) as caught:
        ask(gw, str(key["key"]))
    assert caught.value.code == "expired_api_key"
    assert "expired at" in caught.value.message
    listed = gw.admin("GET", f"/admin/tenants/{tid}/keys").json()["data"]
    assert [k["expires_at"] for k in listed if k["id"] == key["id"]] == [key["expires_at"]]


def test_a_revocation_after_a_grace_period_lets_the_key_work_until_then(
    gw: GatewayServer,
) -> None:
    tid, _ = gw.new_tenant()
    old = new_key(gw, tid)
    ask(gw, str(old["key"]))
    r = gw.admin("DELETE", f"/admin/keys/{old['id']}", params={"after_s": 2})
    assert r.status_code == 200, r.text
    revoked_at = r.json()["revoked_at"]
    assert datetime.fromisoformat(revoked_at) > datetime.now(UTC)
    ask(gw, str(old["key"]))  # still works in the grace period
    wait_until(revoked_at)
    with pytest.raises(openai.AuthenticationError) as caught:
        ask(gw, str(old["key"]))
    assert caught.value.code == "invalid_api_key"


def test_a_revocation_never_moves_later(gw: GatewayServer) -> None:
    tid, _ = gw.new_tenant()
    key = new_key(gw, tid)
    graced = gw.admin("DELETE", f"/admin/keys/{key['id']}", params={"after_s": 3600}).json()
    now = gw.admin("DELETE", f"/admin/keys/{key['id']}").json()
    assert now["revoked_at"] < graced["revoked_at"]
    with pytest.raises(openai.AuthenticationError):
        ask(gw, str(key["key"]))
    again = gw.admin("DELETE", f"/admin/keys/{key['id']}", params={"after_s": 3600}).json()
    assert again["revoked_at"] == now["revoked_at"]


def test_an_expiry_with_an_offset_is_answered_in_utc_as_listed(gw: GatewayServer) -> None:
    tid, _ = gw.new_tenant()
    key = new_key(gw, tid, expires_at="2030-01-01T09:00:00-05:00")
    assert key["expires_at"] == "2030-01-01T14:00:00+00:00"
    listed = gw.admin("GET", f"/admin/tenants/{tid}/keys").json()["data"]
    assert [k["expires_at"] for k in listed if k["id"] == key["id"]] == [key["expires_at"]]


@pytest.mark.parametrize(
    ("body", "params", "where"),
    [
        ({"expires_in_s": 0}, None, "expires_in_s"),
        ({"expires_in_s": "soon"}, None, "expires_in_s"),
        ({"expires_at": "2020-01-01T00:00:00Z"}, None, "expires_at"),
        ({"expires_at": "2099-01-01T00:00:00Z", "expires_in_s": 60}, None, "not both"),
        ({"expires_at": "9999-12-31T23:59:59-05:00"}, None, "expires_at"),  # past year 9999
        (None, {"after_s": -1}, "after_s"),
        (None, {"after_s": 10**9}, "after_s"),
    ],
)
def test_bad_expiries_and_grace_periods_are_a_400(
    gw: GatewayServer, body: dict[str, object] | None, params: dict[str, object] | None, where: str
) -> None:
    tid, _ = gw.new_tenant()
    if body is not None:
        r = gw.admin("POST", f"/admin/tenants/{tid}/keys", json=body)
    else:
        key = new_key(gw, tid)
        r = gw.admin("DELETE", f"/admin/keys/{key['id']}", params=params)
    assert r.status_code == 400, r.text
    assert where in json.dumps(r.json()["error"])


def cli(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "THRIFTGATE_DATABASE_URL": db}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_cli_creates_expiring_keys_and_revokes_with_grace(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}"
    assert cli("tenant", "create", "acme", db=db).returncode == 0
    made = cli("key", "create", "acme", "--expires-in", "30d", db=db)
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip().startswith("tg-") and "expires 20" in made.stderr
    bad = cli("key", "create", "acme", "--expires-in", "soon", db=db)
    assert bad.returncode == 2 and "not a duration" in bad.stderr
    zero = cli("key", "create", "acme", "--expires-in", "0", db=db)  # named by its flag
    assert zero.returncode == 2 and zero.stderr.startswith("error: --expires-in: "), zero.stderr
    past = cli("key", "create", "acme", "--expires-at", "2020-01-01T00:00Z", db=db)
    assert past.returncode != 0 and "has passed" in past.stderr
    (key,) = json.loads(cli("key", "list", "acme", db=db).stdout)
    expires = datetime.fromisoformat(key["expires_at"])
    assert abs(expires - datetime.now(UTC) - timedelta(days=30)) < timedelta(minutes=5)
    graced = cli("key", "revoke", key["id"], "--grace", "1h", db=db)
    assert graced.returncode == 0, graced.stderr
    revoked_at = datetime.fromisoformat(json.loads(graced.stdout)["revoked_at"])
    assert abs(revoked_at - datetime.now(UTC) - timedelta(hours=1)) < timedelta(minutes=5)
