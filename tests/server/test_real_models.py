"""End to end with the real dlib models and real photos and video (../shared/data): enrol, run jobs, read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from faceprint.analyze import Analyzer
from faceprint.errors import ModelError
from faceprint.jobs.store import SqliteJobStore
from faceprint.jobs.video import video_available
from faceprint.jobs.worker import JobWorker, WorkerConfig
from faceprint.server.app import create_app
from faceprint.server.settings import ServerSettings

from .conftest import KEY

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def real(tmp_path: Path, examples_dir: Path) -> Iterator[tuple[TestClient, ServerSettings]]:
    settings = ServerSettings(data_dir=tmp_path / "data", api_keys=KEY)
    try:
        with TestClient(create_app(settings), headers={"Authorization": f"Key {KEY}"}) as client:
            yield client, settings
    except ModelError as err:
        pytest.skip(f"real model weights unavailable: {err}")


def _upload(client: TestClient, path: Path) -> str:
    response = client.post("/api/v1/storage/", files={"file": (path.name, path.read_bytes())})
    assert response.status_code == 201, response.text
    uri: str = response.json()["uri"]
    return uri


def _run_jobs(settings: ServerSettings) -> None:
    with SqliteJobStore(settings.layout.jobs_db) as store, Analyzer(workers=1) as analyzer:
        worker = JobWorker(store, settings.layout, analyzer, config=WorkerConfig(lease_s=60))
        while worker.run_once():
            pass


def _items(client: TestClient, job_id: str) -> list[dict[str, Any]]:
    page = client.get(f"/api/v1/jobs/{job_id}/detailed-results/", params={"limit": 1000}).json()
    data: list[dict[str, Any]] = page["data"]
    return data


def test_real_photos_and_video_are_identified(real: tuple[TestClient, ServerSettings], examples_dir: Path) -> None:
    client, settings = real
    assert client.post("/api/v1/models/", json={"name": "people"}).status_code == 201
    for name, photo in [
        ("Obama", "obama.jpg"),
        ("Biden", "biden.jpg"),
        ("Lin-Manuel Miranda", "lin-manuel-miranda.png"),
        ("Alex Lacamoire", "alex-lacamoire.png"),
    ]:
        enrolled = client.post(
            "/api/v1/models/people/persons/", json={"name": name, "sources": [_upload(client, examples_dir / photo)]}
        ).json()
        assert enrolled["templates_added"] == 1, enrolled
    both = _upload(client, examples_dir / "knn_examples" / "test" / "obama_and_biden.jpg")
    obama = _upload(client, examples_dir / "obama2.jpg")
    sources = [obama, both]
    if video_available():
        sources.append(_upload(client, examples_dir / "short_hamilton_clip.mp4"))
    job = client.post(
        "/api/v1/jobs/",
        json={"sources": sources, "modules": {"face_recognition": {"model": "people", "enable_top_k": True}}},
    ).json()
    _run_jobs(settings)
    done = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert done["state"] == "completed" and done["errors"] == [], done
    items = _items(client, job["id"])
    by_source: dict[str, list[str]] = {}
    for item in items:
        by_source.setdefault(item["source"], []).append(item["meta"]["person"])
    assert by_source[obama] == ["Obama"]
    # Both named once; the detector may also find a face in the background, which must stay unknown.
    assert by_source[both].count("Biden") == 1 and by_source[both].count("Obama") == 1
    assert set(by_source[both]) <= {"Biden", "Obama", "unknown"}
    if video_available():
        # He is on stage, close up, for several seconds; nobody else is taken for an enrolled person.
        assert "Lin-Manuel Miranda" in by_source[sources[2]]
        assert set(by_source[sources[2]]) <= {"Lin-Manuel Miranda", "Alex Lacamoire", "unknown"}
        segment = next(i for i in items if i["media_type"] == "video")
        assert segment["tc_start"] and segment["time_end"] >= segment["time_start"]
    same = client.post("/api/v1/compare", json={"a": obama, "b": sources[0]}).json()
    assert same["match"] is True and same["probability"] > 0.9
