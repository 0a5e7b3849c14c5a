"""URL sources: off by default; only allowed hosts, only public addresses, no redirect to another host."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from faceprint.jobs.uploads import UploadStore
from faceprint.server.app import create_app
from faceprint.server.fetch import UrlFetchError, UrlNotAllowedError, fetch_url
from faceprint.server.settings import ServerSettings
from faceprint.testing import make_face_png

from .conftest import FAKE, KEY

HOST = "images.example.org"
PUBLIC = ["93.184.216.34"]


def _transport(routes: dict[str, httpx.Response]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        return routes.get(str(request.url), httpx.Response(404))

    return httpx.Client(transport=httpx.MockTransport(handler), follow_redirects=False)


def test_an_allowed_public_url_is_fetched_into_storage(tmp_path: Path) -> None:
    data = make_face_png((200, 20, 20))
    client = _transport(
        {
            f"https://{HOST}/old.png": httpx.Response(301, headers={"location": "/faces/a.png"}),
            f"https://{HOST}/faces/a.png": httpx.Response(200, content=data),
        }
    )
    record = fetch_url(
        f"https://{HOST}/old.png",
        allowed_hosts=(HOST,),
        uploads=UploadStore(tmp_path),
        max_bytes=10_000,
        resolver=lambda host, port: PUBLIC,
        client=client,
    )
    assert (record.filename, record.media_type, record.size_bytes) == ("a.png", "image", len(data))
    assert (tmp_path / record.id / "data").read_bytes() == data


@pytest.mark.parametrize(
    ("url", "addresses", "routes", "error"),
    [
        ("https://evil.example.com/a.png", PUBLIC, {}, UrlNotAllowedError),
        ("file:///etc/passwd", PUBLIC, {}, UrlNotAllowedError),
        (f"https://user:pw@{HOST}/a.png", PUBLIC, {}, UrlNotAllowedError),
        (f"https://{HOST}/a.png", ["127.0.0.1"], {}, UrlNotAllowedError),
        (f"https://{HOST}/a.png", ["10.1.2.3"], {}, UrlNotAllowedError),
        (f"https://{HOST}/a.png", ["169.254.169.254"], {}, UrlNotAllowedError),
        (f"https://{HOST}/a.png", ["::1"], {}, UrlNotAllowedError),
        (f"https://{HOST}/a.png", [*PUBLIC, "192.168.0.1"], {}, UrlNotAllowedError),
        (
            f"https://{HOST}/a.png",
            PUBLIC,
            {f"https://{HOST}/a.png": httpx.Response(302, headers={"location": "https://169.254.169.254/x"})},
            UrlNotAllowedError,
        ),
        (f"https://{HOST}/missing.png", PUBLIC, {}, UrlFetchError),
    ],
)
def test_refused_urls(
    tmp_path: Path, url: str, addresses: list[str], routes: dict[str, httpx.Response], error: type[Exception]
) -> None:
    with pytest.raises(error):
        fetch_url(
            url,
            allowed_hosts=(HOST,),
            uploads=UploadStore(tmp_path),
            max_bytes=10_000,
            resolver=lambda host, port: addresses,
            client=_transport(routes),
        )
    assert list(tmp_path.iterdir()) == []


def test_url_sources_are_off_by_default_and_private_addresses_refused(tmp_path: Path) -> None:
    job = {"sources": ["http://localhost/a.png"], "modules": {"face_recognition": {}}}
    off = ServerSettings(data_dir=tmp_path / "a", api_keys=KEY, pipeline_factory=FAKE)
    with TestClient(create_app(off), headers={"Authorization": f"Key {KEY}"}) as client:
        response = client.post("/api/v1/jobs/", json=job)
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_source"
    on = ServerSettings(data_dir=tmp_path / "b", api_keys=KEY, pipeline_factory=FAKE, allowed_url_hosts="localhost")
    with TestClient(create_app(on), headers={"Authorization": f"Key {KEY}"}) as client:
        response = client.post("/api/v1/jobs/", json=job)
        assert response.status_code == 422 and response.json()["error"]["code"] == "url_not_allowed"
        assert "private or reserved" in response.json()["error"]["message"]
