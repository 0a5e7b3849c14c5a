"""Fixtures for server tests: an app on the fake pipeline, a client with a key, and a worker to run jobs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from faceprint.analyze import Analyzer
from faceprint.jobs.store import SqliteJobStore
from faceprint.jobs.worker import JobWorker, WorkerConfig
from faceprint.server.app import create_app
from faceprint.server.settings import ServerSettings
from faceprint.testing import fake_pipeline_factory, make_face_png

KEY = "test-key-1"
FAKE = "faceprint.testing:fake_pipeline_factory"
RED = (200, 20, 20)
BLUE = (20, 20, 200)


@pytest.fixture
def settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(data_dir=tmp_path / "data", api_keys=KEY, pipeline_factory=FAKE, max_upload_bytes=2_000_000)


@pytest.fixture
def client(settings: ServerSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers={"Authorization": f"Key {KEY}"}) as test_client:
        yield test_client


@pytest.fixture
def anonymous(client: TestClient) -> TestClient:
    """The same app, without the key."""
    bare = TestClient(client.app)
    return bare


class Runner:
    """Runs every queued job in this process (as a worker process would), on the fake pipeline."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings

    def run_all(self) -> int:
        count = 0
        with (
            SqliteJobStore(self.settings.layout.jobs_db) as store,
            Analyzer(workers=1, executor="local", pipeline_factory=fake_pipeline_factory) as analyzer,
        ):
            worker = JobWorker(
                store,
                self.settings.layout,
                analyzer,
                config=WorkerConfig(lease_s=10, heartbeat_s=0.2, limits=self.settings.limits),
                pipeline_factory_ref=FAKE,
            )
            while worker.run_once():
                count += 1
        return count


@pytest.fixture
def runner(settings: ServerSettings) -> Runner:
    return Runner(settings)


def upload(client: TestClient, data: bytes, name: str = "face.png", **form: str) -> dict[str, Any]:
    response = client.post("/api/v1/storage/", files={"file": (name, data)}, data=form)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def face(rgb: tuple[int, int, int] = RED) -> bytes:
    return make_face_png(rgb)
