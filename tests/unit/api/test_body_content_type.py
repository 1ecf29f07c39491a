"""A JSON body sent without `Content-Type: application/json` (curl -d's default is a form) is
not read as JSON: the 400 must say what to send, not only "Invalid request body."."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.api.admin import TenantCreate
from gateway.api.errors import install_error_handlers


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/tenants")
    async def create(body: TenantCreate) -> dict[str, str]:
        return {"name": body.name}

    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", None])
def test_a_body_without_a_json_content_type_is_told_to_send_one(
    client: TestClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = client.post("/tenants", content=b'{"name": "x"}', headers=headers)
    err = r.json()["error"]
    assert r.status_code == 400 and err["type"] == "invalid_request_error"
    assert "Content-Type: application/json" in err["message"], err


def test_a_json_body_still_passes_and_a_bad_field_is_named(client: TestClient) -> None:
    assert client.post("/tenants", json={"name": "x"}).json() == {"name": "x"}
    r = client.post("/tenants", json={"name": "x", "rpm": 0})
    assert r.status_code == 400 and r.json()["error"]["param"] == "rpm"
