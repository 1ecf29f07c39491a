"""Security: tenant isolation, hashed keys, admin-only surfaces, and secrets that never leak.

A real gateway with two tenants, a mock upstream that needs the provider key, and an upstream
that echoes the key it was sent in its error message (as some providers do). Afterwards the
gateway's captured log, its responses and its /metrics output are searched for every secret.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.servers import (
    ADMIN_KEY,
    GatewayServer,
    MockUpstreamServer,
    create_database,
    drop_database,
    mock_deployment,
    sql,
    wait_for,
)

pytestmark = pytest.mark.integration

PROVIDER_KEY = "sk-mock-provider-secret-0123456789"  # what GatewayServer puts in the env


class _EchoKey(BaseHTTPRequestHandler):
    """An upstream that refuses and quotes the key back, like 'Incorrect API key provided'."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps(
            {
                "error": {
                    "message": f"Incorrect API key provided: {self.headers.get('Authorization')}",
                    "type": "invalid_request_error",
                }
            }
        ).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class Rig:
    def __init__(self, tmp: Path, mock: MockUpstreamServer) -> None:
        try:
            self._start(tmp, mock)
        except BaseException:
            self.close()  # nothing the failed start already launched may outlive the test
            raise

    def _start(self, tmp: Path, mock: MockUpstreamServer) -> None:
        self.db = create_database("tg_security")
        self.echo = ThreadingHTTPServer(("127.0.0.1", 0), _EchoKey)
        threading.Thread(target=self.echo.serve_forever, daemon=True).start()
        leaky = mock_deployment("leaky", "leaky-model", mock)
        leaky["api_base"] = f"http://127.0.0.1:{self.echo.server_address[1]}/v1"
        self.mock = mock
        self.gw = GatewayServer(tmp, self.db, [mock_deployment("mock", "gpt-4o-mini", mock), leaky])
        self.a_id, self.a_key = self.gw.new_tenant("tenant-a")
        self.b_id, self.b_key = self.gw.new_tenant("tenant-b")
        self.secrets = {
            "provider": PROVIDER_KEY,
            "admin": ADMIN_KEY,
            "a": self.a_key,
            "b": self.b_key,
        }

    def client(self, key: str, **headers: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.gw.url,
            api_key=key,
            max_retries=0,
            timeout=30,
            default_headers=headers or None,
        )

    def close(self) -> None:
        if hasattr(self, "gw"):
            self.gw.stop()
        if hasattr(self, "echo"):
            self.echo.shutdown()
        if hasattr(self, "db"):
            drop_database(self.db)


@pytest.fixture(scope="module")
def rig(session_tmp: Path, mock_upstream: MockUpstreamServer) -> Iterator[Rig]:
    tmp = session_tmp / "security"
    tmp.mkdir(exist_ok=True)
    r = Rig(tmp, mock_upstream)
    yield r
    r.close()


def test_keys_are_stored_only_as_hashes(rig: Rig) -> None:
    rows = sql(rig.db, "SELECT id, hash, prefix FROM api_keys WHERE tenant_id = $1", rig.a_id)
    assert len(rows) == 1
    assert rows[0]["hash"] == hashlib.sha256(rig.a_key.encode()).hexdigest()
    assert rig.a_key.startswith(rows[0]["prefix"]) and len(rows[0]["prefix"]) <= 12
    # No table holds a key in clear: dump every row of every table as text and search it.
    tables = [
        r["tablename"]
        for r in sql(rig.db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    ]
    assert "api_keys" in tables
    for table in tables:
        dump = "\n".join(
            r["j"] for r in sql(rig.db, f'SELECT row_to_json(t)::text AS j FROM "{table}" t')
        )
        for name, secret in rig.secrets.items():
            assert secret not in dump, f"the {name} secret is stored in clear in {table}"


def test_admin_endpoints_refuse_tenant_keys(rig: Rig) -> None:
    schema = httpx.get(rig.gw.base + "/openapi.json", timeout=10).json()
    admin_ops = [
        (m, p) for p, ops in schema["paths"].items() if p.startswith("/admin") for m in ops
    ]
    assert len(admin_ops) >= 8
    for method, path in admin_ops:
        url = rig.gw.base + path.replace("{tenant_id}", rig.a_id).replace("{key_id}", "x")
        for headers in (
            {"Authorization": f"Bearer {rig.a_key}"},
            {"X-Admin-Key": rig.a_key},
            {"Authorization": f"Bearer {rig.a_key}", "X-Admin-Key": rig.a_key},
            {},
        ):
            r = httpx.request(method.upper(), url, headers=headers, json={}, timeout=10)
            assert r.status_code == 401, (method, path, headers.keys(), r.text)
            assert r.json()["error"]["code"] in ("invalid_admin_key", "missing_api_key")
    # The dashboard's sign-in refuses a tenant key too.
    with httpx.Client(base_url=rig.gw.base, timeout=10) as c:
        form = c.get("/dashboard/login")
        token = form.cookies.get("tg_login_csrf") or next(iter(c.cookies.values()), "")
        r = c.post(
            "/dashboard/login",
            data={"admin_key": rig.a_key, "login_token": token},
            headers={"Origin": rig.gw.base},
        )
        assert r.status_code in (400, 401, 403), r.text[:300]
        assert "tg_session" not in r.cookies


def test_cache_entries_never_cross_tenants(rig: Rig) -> None:
    messages: Any = [{"role": "user", "content": f"the secret plan is {uuid.uuid4().hex}"}]
    a = rig.client(rig.a_key)
    first = a.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages, temperature=0
    )
    assert first.headers["x-thriftgate-cache"] == "miss"

    def a_hits() -> bool:
        raw = a.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=messages, temperature=0
        )
        return raw.headers["x-thriftgate-cache"].startswith("hit")

    assert wait_for(a_hits, 5, 0.2), "tenant A never hit its own entry: the test proves nothing"
    # Each probe from a tenant of its own: a probe's miss stores an entry for that tenant,
    # which a later probe by the same tenant could legitimately hit.
    exact = messages
    near = [{"role": "user", "content": messages[0]["content"] + " ?"}]
    for key, prompt in (
        (rig.b_key, exact),
        (rig.gw.new_tenant()[1], near),
        (rig.gw.new_tenant()[1], exact),
    ):
        raw = rig.client(key).chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=prompt, temperature=0
        )
        assert raw.headers["x-thriftgate-cache"] == "miss", "another tenant got A's entry"
        assert Decimal(raw.headers["x-thriftgate-cost-usd"]) > 0


def test_ledger_and_spend_stay_per_tenant(rig: Rig) -> None:
    shared_rid = "shared-" + uuid.uuid4().hex  # both tenants claim the same request id
    for key in (rig.a_key, rig.b_key):
        rig.client(
            key, **{"x-request-id": shared_rid, "Cache-Control": "no-store"}
        ).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
        )
    rows = wait_for(
        lambda: (
            [
                r
                for r in sql(
                    rig.db,
                    "SELECT tenant_id, key_id FROM usage_ledger WHERE request_id = $1",
                    shared_rid,
                )
                if r
            ]
            if len(sql(rig.db, "SELECT 1 FROM usage_ledger WHERE request_id = $1", shared_rid)) == 2
            else []
        ),
        10,
    )
    assert sorted(r["tenant_id"] for r in rows) == sorted([rig.a_id, rig.b_id])
    # B's key can use B's budget only: exhaust A, B is still served.
    assert (
        rig.gw.admin("PATCH", f"/admin/tenants/{rig.a_id}", json={"budget_usd": "0"}).status_code
        == 200
    )
    with pytest.raises(openai.RateLimitError):
        rig.client(rig.a_key, **{"Cache-Control": "no-store"}).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    rig.client(rig.b_key, **{"Cache-Control": "no-store"}).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
    )
    assert (
        rig.gw.admin("PATCH", f"/admin/tenants/{rig.a_id}", json={"budget_usd": None}).status_code
        == 200
    )
    # Tenant keys reach no spend, key or ledger listing, for their own tenant or another.
    for path in (
        f"/admin/spend?tenant={rig.b_id}",
        f"/admin/requests?tenant={rig.b_id}",
        f"/admin/tenants/{rig.b_id}/keys",
        f"/admin/requests?tenant={rig.a_id}",
    ):
        r = httpx.get(
            rig.gw.base + path, headers={"Authorization": f"Bearer {rig.a_key}"}, timeout=10
        )
        assert r.status_code == 401
        assert rig.b_id not in r.text


def test_secrets_never_in_errors_logs_or_metrics(rig: Rig) -> None:
    seen: list[str] = []
    # An upstream that quotes the provider key back in its error.
    with pytest.raises(openai.APIStatusError) as info:
        rig.client(rig.a_key).chat.completions.create(
            model="leaky-model", messages=[{"role": "user", "content": "hi"}]
        )
    seen.append(str(info.value.body))
    assert "Incorrect API key provided: Bearer ***" in seen[-1]  # the upstream did quote it
    # Bad tenant keys, bad admin keys, a revoked key.
    for bad in (rig.a_key + "x", rig.a_key[:-1], "Bearer " + rig.b_key):
        r = httpx.post(
            rig.gw.url + "/chat/completions",
            headers={"Authorization": f"Bearer {bad}"},
            json={"model": "gpt-4o-mini", "messages": []},
            timeout=10,
        )
        assert r.status_code == 401
        seen.append(r.text + str(r.headers))
    r = httpx.get(
        rig.gw.base + "/admin/tenants",
        headers={"Authorization": f"Bearer {ADMIN_KEY}x"},
        timeout=10,
    )
    seen.append(r.text)
    # The provider key really was sent upstream (so finding it nowhere else means something).
    assert any(req["authorization"] == f"Bearer {PROVIDER_KEY}" for req in rig.mock.received())
    seen.append(httpx.get(rig.gw.base + "/metrics", timeout=10).text)
    seen.append(httpx.get(rig.gw.base + "/readyz", timeout=10).text)
    seen.append(rig.gw.admin("GET", f"/admin/tenants/{rig.a_id}/keys").text)
    seen.append(rig.gw.admin("GET", "/admin/requests").text)
    seen.append(rig.gw.admin("GET", "/admin/deployments").text)
    seen.append(rig.gw.log())
    for name, secret in rig.secrets.items():
        for text in seen:
            assert secret not in text, f"the {name} secret leaked: ...{text[:300]}"
