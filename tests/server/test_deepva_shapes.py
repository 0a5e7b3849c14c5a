"""JSON shapes field by field against DeepVA's documented examples (docs.deepva.com: core-resources/job,
endpoints, mining-modules/face-recognition). The examples are restated here as the fields and types the
docs show; values are ours."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient

from .conftest import RED, Runner, face, upload

# The Job Resource's top-level attributes (ttl and webhook are optional in DeepVA and not offered here).
JOB_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "tag": (str,),
    "state": (str,),
    "errors": (list,),
    "progress": (float, int),
    "duration": (float, int),
    "time_created": (str,),
    "time_started": (str, type(None)),
    "time_completed": (str, type(None)),
    "sources": (list,),
    "modules": (dict,),
    "media_type": (str,),
    "result": (dict,),
}
PAGE_FIELDS = {
    "total": int,
    "offset": int,
    "limit": int,
    "next": (str, type(None)),
    "prev": (str, type(None)),
    "data": list,
}
# A face_recognition detailed result: DeepVA's video segment fields; an image face has no frames or times.
ITEM_FIELDS = {"id", "media_type", "source", "module", "meta", "thumbnail", "detections"}
META_FIELDS = {"person", "class_id", "closest_person", "mean_distance", "indexed_identity", "closest_k_persons"}
PARAMS = {
    "model": None,
    "models": None,
    "max_distance": None,
    "cluster_unknowns": False,
    "index_unknowns": False,
    "face_detection_scale": 600,
    "enable_top_k": False,
    "top_k": 3,
    # faceprint's own: None means "the mode's default" (off in confidential mode).
    "thumbnails": None,
}


def _check(obj: dict[str, Any], fields: dict[str, Any]) -> None:
    for name, types in fields.items():
        assert name in obj, name
        assert isinstance(obj[name], types), (name, obj[name])


def test_job_object_and_list_have_deepvas_fields(client: TestClient, runner: Runner) -> None:
    source = upload(client, face(RED))["uri"]
    created = client.post("/api/v1/jobs/", json={"sources": [source], "modules": {"face_recognition": {}}}).json()
    _check(created, JOB_FIELDS)
    assert created["state"] == "waiting" and created["time_started"] is None
    # Module parameters come back with DeepVA's names and defaults, plus the module's state and progress.
    assert created["modules"] == {"face_recognition": {**PARAMS, "state": "waiting", "progress": 0.0}}
    runner.run_all()
    job = client.get(f"/api/v1/jobs/{created['id']}/").json()
    _check(job, JOB_FIELDS)
    assert job["state"] in ("waiting", "running", "completed", "failed", "cancelled")
    for stamp in ("time_created", "time_started", "time_completed"):
        datetime.fromisoformat(job[stamp])  # an ISO time string
    assert set(job["result"]) >= {"detailed_link", "summary"}
    summary = job["result"]["summary"][0]
    assert summary["source"] == source and summary["media_type"] == "image"
    assert summary["items"] == [{"type": "face", "label": "unknown", "module": "face_recognition"}]
    listed = client.get("/api/v1/jobs/").json()
    _check(listed, PAGE_FIELDS)
    _check(listed["data"][0], JOB_FIELDS)


def test_detailed_results_page_and_image_item_fields(client: TestClient, runner: Runner) -> None:
    source = upload(client, face(RED))["uri"]
    job = client.post(
        "/api/v1/jobs/", json={"sources": [source], "modules": {"face_recognition": {"enable_top_k": True}}}
    ).json()
    runner.run_all()
    page = client.get(f"/api/v1/jobs/{job['id']}/detailed-results/").json()
    _check(page, PAGE_FIELDS)
    assert page["limit"] == 10  # DeepVA's default
    item = page["data"][0]
    assert ITEM_FIELDS <= set(item)
    assert (item["media_type"], item["module"], item["source"]) == ("image", "face_recognition", source)
    assert META_FIELDS <= set(item["meta"])
    (detection,) = item["detections"]
    assert detection["type"] == "face_bbox" and set(detection["data"]) == {"x", "y", "w", "h"}
    assert all(0.0 <= v <= 1.0 for v in detection["data"].values())


def test_limit_over_1000_is_refused(client: TestClient) -> None:
    response = client.get("/api/v1/jobs/", params={"limit": 1001})
    assert response.status_code == 422 and response.json()["error"]["message"].startswith("limit")
