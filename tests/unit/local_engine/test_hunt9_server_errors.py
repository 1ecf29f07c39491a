"""Hunt 9 (h4): every answer of the engine's own HTTP server is OpenAI-shaped, errors included."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from decimal import Decimal
from typing import Any

from starlette.testclient import TestClient

from local_engine.energy import EnergyReading
from local_engine.energy_attribution import EnergySource
from local_engine.server import create_app
from local_engine.stats import EngineStats, StatsRecorder


class Unmetered:
    def read(self) -> EnergyReading:
        return EnergyReading(available=False, reason="test")


class BrokenBackend:
    """Serves the routes but fails every generation with an unexpected exception."""

    name = "fake"
    model_name = "m"
    meter: EnergySource = Unmetered()

    async def start(self) -> None:
        return None

    async def complete(self, endpoint: Any, body: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom: /secret/path")

    async def stream(self, endpoint: Any, body: dict[str, Any]) -> AsyncGenerator[Any, None]:
        raise RuntimeError("boom")
        yield  # pragma: no cover

    def stats(self) -> EngineStats:
        return StatsRecorder(Decimal(0)).snapshot()

    async def extra_metrics(self) -> str:
        return ""

    async def aclose(self) -> None:
        return None


def assert_openai_error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status
    assert resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert {"message", "type", "code"} <= set(error)
    return dict(error)


def test_unknown_paths_and_methods_get_openai_errors() -> None:
    with TestClient(create_app(BrokenBackend()), raise_server_exceptions=False) as client:
        assert_openai_error(client.get("/v1/nothing"), 404)
        assert_openai_error(client.post("/v1/embeddings", json={"input": "x"}), 404)
        assert_openai_error(client.get("/v1/chat/completions"), 405)


def test_an_unexpected_failure_is_a_json_500_without_internals() -> None:
    with TestClient(create_app(BrokenBackend()), raise_server_exceptions=False) as client:
        resp = client.post("/v1/chat/completions", json={"messages": []})
        error = assert_openai_error(resp, 500)
        assert "secret" not in error["message"]
        assert error["type"] == "server_error"
        stream = client.post("/v1/completions", json={"prompt": "x", "stream": True})
        assert_openai_error(stream, 500)
