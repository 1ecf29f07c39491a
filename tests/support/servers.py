"""Real local servers for tests: a throwaway Postgres database, the mock upstream, the gateway.

Everything runs as real processes on 127.0.0.1 so tests exercise HTTP, SSE, signals and the
database exactly as a user's deployment would.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import openai
import yaml

PG_BASE = os.environ.get("THRIFTGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
ADMIN_KEY = "test-admin-key-" + uuid.uuid4().hex[:8]
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str, timeout_s: float = 60.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} came up")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code < 500:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} not up after {timeout_s}s: {last}")


# -- Postgres ----------------------------------------------------------------------------


def create_database(prefix: str = "tg_test") -> str:
    """A fresh empty database; returns its SQLAlchemy (asyncpg) URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"

    async def go() -> None:
        conn = await asyncpg.connect(PG_BASE + "/postgres")
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(go())
    return PG_BASE.replace("postgresql://", "postgresql+asyncpg://") + "/" + name


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]

    async def go() -> None:
        conn = await asyncpg.connect(PG_BASE + "/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(go())


def sql(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    """Run one query against the test database (asserting on what really got stored)."""
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")

    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(go())


# -- processes -----------------------------------------------------------------------------


class Process:
    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=str(ROOT)
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks run."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


class MockUpstreamServer(Process):
    def __init__(self, tmp: Path, **knobs: Any) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "gateway.testing.mock_upstream", "--port", str(self.port)]
        super().__init__(args, dict(os.environ), tmp / f"mock-{self.port}.log")
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = self.base + "/v1"
        wait_http(self.url + "/models", 30, self.proc)
        if knobs:
            self.control(**knobs)

    def control(self, **knobs: Any) -> dict[str, Any]:
        r = httpx.post(self.base + "/_control", json=knobs, timeout=5)
        r.raise_for_status()
        return dict(r.json())

    def reset(self) -> None:
        self.control(
            latency_ms=0,
            ms_per_token=0,
            fail_next=0,
            fail_rate=0,
            hang_s=0,
            first_token_ms=0,
            no_usage=False,
            truncate_stream=False,
            malformed_stream=False,
            omit_done=False,
            reply=None,
            fail_status=503,
            fail_code=None,
            fail_param=None,
            fail_message=None,
            fail_text=False,
            honor_max_tokens=False,
        )

    def received(self) -> list[dict[str, Any]]:
        return list(httpx.get(self.base + "/_requests", timeout=5).json()["requests"])


class GatewayServer(Process):
    """`thriftgate serve` on a free port, with its own config file and spool directory."""

    def __init__(
        self,
        tmp: Path,
        db_url: str,
        deployments: list[dict[str, Any]],
        *,
        extra_env: dict[str, str] | None = None,
        spool_dir: Path | None = None,
        workers: int = 1,
        port: int | None = None,
        file_config: dict[str, Any] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.tmp = tmp
        config = {"deployments": deployments, **(file_config or {})}
        self.config_path = tmp / f"gateway-{self.port}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.spool_dir = spool_dir or (tmp / f"spool-{self.port}")
        self.db_url = db_url
        env = dict(os.environ)
        env.update(
            {
                "THRIFTGATE_DATABASE_URL": db_url,
                "THRIFTGATE_CONFIG": str(self.config_path),
                "THRIFTGATE_ADMIN_KEY": ADMIN_KEY,
                "THRIFTGATE_SPOOL_DIR": str(self.spool_dir),
                "THRIFTGATE_LOG_LEVEL": "info",
                "MOCK_PROVIDER_KEY": "sk-mock-provider-secret-0123456789",
            }
        )
        env.update(extra_env or {})
        args = [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        super().__init__(args, env, tmp / f"gateway-{self.port}.log")
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = self.base + "/v1"
        wait_http(self.base + "/healthz", 90, self.proc)

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        return httpx.request(method, self.base + path, headers=headers, timeout=30, **kwargs)

    def new_tenant(self, name: str | None = None, **fields: Any) -> tuple[str, str]:
        """Create a tenant and one key through the admin API; returns (tenant_id, key)."""
        r = self.admin(
            "POST", "/admin/tenants", json={"name": name or f"t-{uuid.uuid4().hex[:8]}", **fields}
        )
        assert r.status_code == 201, r.text
        tid = r.json()["id"]
        k = self.admin("POST", f"/admin/tenants/{tid}/keys", json={})
        assert k.status_code == 201, k.text
        return tid, k.json()["key"]


def dashboard_session(gw: GatewayServer) -> httpx.Client:
    """An httpx client signed in to `gw`'s dashboard with the admin key (close it when done)."""
    client = httpx.Client(base_url=gw.base, timeout=30, headers={"Origin": gw.base})
    page = client.get("/dashboard/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert token is not None, page.text[:300]
    r = client.post("/dashboard/login", data={"admin_key": ADMIN_KEY, "login_token": token[1]})
    assert r.status_code == 303, r.text[:300]
    return client


def mock_deployment(
    name: str, model: str, mock: MockUpstreamServer, **extra: Any
) -> dict[str, Any]:
    dep = {
        "name": name,
        "model": model,
        "provider": "openai_compatible",
        "upstream_model": "mock-model",
        "api_base": mock.url,
        "api_key_env": "MOCK_PROVIDER_KEY",
        "input_cost_per_mtok": 0.15,
        "output_cost_per_mtok": 0.60,
    }
    dep.update(extra)
    return dep


def wait_for(predicate: Any, timeout_s: float = 10.0, interval_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(interval_s)


def sdk_client(gateway: GatewayServer, key: str) -> openai.OpenAI:
    """The official SDK pointed at `gateway`: no retries, so a test sees each answer."""
    return openai.OpenAI(base_url=gateway.url, api_key=key, max_retries=0, timeout=30)


def ledger_row(gateway: GatewayServer, request_id: str) -> dict[str, Any]:
    """The one ledger row of `request_id`, once written (rows are written after the answer)."""
    rows = wait_for(
        lambda: sql(gateway.db_url, "SELECT * FROM usage_ledger WHERE request_id = $1", request_id),
        timeout_s=10,
    )
    assert rows, f"no ledger row for {request_id}"
    assert len(rows) == 1
    return dict(rows[0])
