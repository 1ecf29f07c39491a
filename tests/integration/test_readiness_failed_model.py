"""/readyz after a local model failed to load: it said `local_engines: ok` with a 200 while
every request got a 503 (hunt9 h1, h4). Not ready when nothing else can serve; degraded, still
a 200, when another deployment can."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    create_database,
    drop_database,
    mock_deployment,
    wait_for,
)

pytestmark = pytest.mark.integration


def broken_local(tmp: Path) -> dict[str, Any]:
    folder = tmp / "broken-model"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    return {"name": "broken", "model": "m", "provider": "local", "options": {"model": str(folder)}}


def ready_after_preload(gw: GatewayServer) -> httpx.Response:
    def settled() -> httpx.Response | None:
        r = httpx.get(gw.base + "/readyz", timeout=10)
        return r if r.json()["local_engines"] != "loading" else None

    answer = wait_for(settled, timeout_s=60, interval_s=0.2)
    assert answer is not None, "the preload never finished"
    return answer


@pytest.mark.parametrize("with_other", [False, True])
def test_a_model_that_failed_to_load_shows_in_readiness(
    tmp_path: Path, mock_upstream: MockUpstreamServer, with_other: bool
) -> None:
    db = create_database("tg_ready")
    deps = [broken_local(tmp_path)]
    if with_other:
        deps.append(mock_deployment("cloud", "m", mock_upstream))
    gw = GatewayServer(tmp_path, db, deps)
    try:
        r = ready_after_preload(gw)
        assert r.json()["local_engines"] == "failed"
        assert r.json()["status"] == "degraded"
        assert r.status_code == (200 if with_other else 503)
    finally:
        gw.stop()
        drop_database(db)
