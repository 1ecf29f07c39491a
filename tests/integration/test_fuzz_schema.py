"""Schemathesis against the gateway's own OpenAPI schema: every public and admin operation.

Each operation gets a bounded number of generated requests, schema-conforming and deliberately
non-conforming, sent over real HTTP to a real gateway process. The property: never a 5xx, and
every 4xx is in OpenAI's error shape {"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from tests.support.servers import (
    ADMIN_KEY,
    GatewayServer,
    MockUpstreamServer,
    create_database,
    drop_database,
    mock_deployment,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_EXAMPLES = 25  # per operation and mode: ~20 operations x 2 modes, well under a minute


def assert_openai_error(response: Any, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:500]}"
    if response.status_code < 400:
        return
    body = response.json()
    assert set(body) == {"error"}, f"{what}: {body}"
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, f"{what}: {body}"
    assert isinstance(err["message"], str) and err["message"], f"{what}: {body}"
    assert isinstance(err["type"], str) and err["type"], f"{what}: {body}"
    assert err["param"] is None or isinstance(err["param"], str), f"{what}: {body}"
    assert err["code"] is None or isinstance(err["code"], str), f"{what}: {body}"


@pytest.fixture(scope="module")
def fuzz_gateway(session_tmp: Path, mock_upstream: MockUpstreamServer) -> Iterator[GatewayServer]:
    db = create_database("tg_fuzz")
    tmp = session_tmp / "fuzz"
    tmp.mkdir(exist_ok=True)
    server = GatewayServer(
        tmp,
        db,
        [
            mock_deployment("mock-mini", "gpt-4o-mini", mock_upstream, timeout_s=5),
            mock_deployment(
                "mock-embed", "text-embedding-3-small", mock_upstream, output_cost_per_mtok=0
            ),
        ],
    )
    yield server
    server.stop()
    drop_database(db)


def _operations(gw: GatewayServer) -> list[Any]:
    raw = httpx.get(gw.base + "/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(raw)
    return [result.ok() for result in schema.get_all_operations()]


def test_schema_covers_public_and_admin_endpoints(fuzz_gateway: GatewayServer) -> None:
    paths = {op.path for op in _operations(fuzz_gateway)}
    for expected in (
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/models",
        "/admin/tenants",
        "/admin/tenants/{tenant_id}",
        "/admin/keys/{key_id}",
        "/admin/spend",
        "/admin/requests",
    ):
        assert expected in paths


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzz_every_operation(fuzz_gateway: GatewayServer, mode: GenerationMode) -> None:
    gw = fuzz_gateway
    _, tenant_key = gw.new_tenant()
    failures: list[str] = []
    for op in _operations(gw):
        if op.path in ("/healthz", "/readyz", "/metrics"):
            continue  # no input to fuzz; covered elsewhere
        key = ADMIN_KEY if op.path.startswith("/admin") else tenant_key

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            headers = {**(case.headers or {}), "Authorization": f"Bearer {key}"}  # noqa: B023
            response = case.call(base_url=gw.base, headers=headers, timeout=30)
            what = f"{case.method} {case.formatted_path} {case.query} {str(case.body)[:300]}"
            assert_openai_error(response, what)

        try:
            run()
        except Unsatisfiable:
            continue  # nothing to make invalid (e.g. no parameters) in negative mode
        except AssertionError as exc:
            failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:2000]}")
    assert not failures, "\n".join(failures)
    assert gw.proc.poll() is None, "the gateway died while being fuzzed"
    assert "Traceback" not in gw.log(), gw.log()[-3000:]
