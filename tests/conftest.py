"""Shared fixtures: a real Postgres database, a real mock upstream and a real gateway process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    create_database,
    drop_database,
    mock_deployment,
)


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("thriftgate")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """An empty Postgres database for the whole session (migrated by the first gateway)."""
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """An empty Postgres database for one test."""
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def mock_upstream(session_tmp: Path) -> Iterator[MockUpstreamServer]:
    server = MockUpstreamServer(session_tmp)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gateway(
    session_tmp: Path, pg_url: str, mock_upstream: MockUpstreamServer
) -> Iterator[GatewayServer]:
    """One gateway for read-mostly tests: model `gpt-4o-mini` served by the mock upstream."""
    server = GatewayServer(
        session_tmp,
        pg_url,
        [
            mock_deployment("mock-mini", "gpt-4o-mini", mock_upstream),
            mock_deployment(
                "mock-embed",
                "text-embedding-3-small",
                mock_upstream,
                input_cost_per_mtok=0.02,
                output_cost_per_mtok=0,
            ),
        ],
    )
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset_mock(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "mock_upstream" in request.fixturenames:
        request.getfixturevalue("mock_upstream").reset()
