"""Every route but /health, the page and the OpenAPI docs needs a key; no key configured means closed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from faceprint.server.app import create_app
from faceprint.server.keys import KeyStore
from faceprint.server.settings import ServerSettings

from .conftest import FAKE, KEY

OPEN = {"/health", "/", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x" * 32, path)


def _routes(client: TestClient) -> list[tuple[str, str]]:
    """Every (method, path) of the route table, as the OpenAPI schema lists it, each also with the other
    trailing-slash form (the aliases hidden from the schema)."""
    schema = client.app.openapi()  # type: ignore[attr-defined]
    pairs = []
    for path, operations in schema["paths"].items():
        if path in OPEN:
            continue
        for method in operations:
            pairs.append((method.upper(), path))
            pairs.append((method.upper(), path[:-1] if path.endswith("/") else path + "/"))
    return pairs


@pytest.mark.parametrize("header", [None, "Key wrong", "Bearer wrong", f"Basic {KEY}", "Key", f"Key  {KEY}x", f"{KEY}"])
def test_every_api_route_refuses_a_missing_or_wrong_key(anonymous: TestClient, header: str | None) -> None:
    routes = _routes(anonymous)
    api_routes = [(m, p) for m, p in routes if p not in OPEN and not p.startswith("/static")]
    assert len(api_routes) >= 40  # the table really was walked (about 20 routes, two slash forms each)
    headers = {} if header is None else {"Authorization": header}
    for method, path in api_routes:
        response = anonymous.request(method, _concrete(path), headers=headers)
        assert response.status_code == 401, (method, path, response.status_code)
        body = response.json()
        assert body["error"]["code"] == "unauthorized" and body["request_id"], (method, path)


def test_open_routes_need_no_key(anonymous: TestClient) -> None:
    for path in ["/health", "/", "/openapi.json", "/docs"]:
        assert anonymous.get(path).status_code == 200, path


@pytest.mark.parametrize("scheme", ["Key", "Bearer", "key", "bearer"])
def test_key_and_bearer_both_work(anonymous: TestClient, scheme: str) -> None:
    assert anonymous.get("/api/v1/jobs/", headers={"Authorization": f"{scheme} {KEY}"}).status_code == 200


def test_no_key_configured_means_closed_and_created_keys_work(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path / "d", pipeline_factory=FAKE)
    with TestClient(create_app(settings)) as bare:
        assert bare.get("/api/v1/jobs/").status_code == 401
        assert bare.get("/api/v1/jobs/", headers={"Authorization": "Key "}).status_code == 401
        keys = KeyStore(settings.layout.keys_file)
        record, secret = keys.create("ci")
        assert secret not in settings.layout.keys_file.read_text()
        assert bare.get("/api/v1/jobs/", headers={"Authorization": f"Key {secret}"}).status_code == 200
        keys.revoke(record.id)
        assert bare.get("/api/v1/jobs/", headers={"Authorization": f"Key {secret}"}).status_code == 401
