"""The HTTP API on the fake pipeline: storage, jobs, galleries, persons, compare, detect, errors."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi.testclient import TestClient

from faceprint.testing import make_two_face_png

from .conftest import BLUE, RED, Runner, face, upload


def _gallery_with_ruby(client: TestClient) -> str:
    assert client.post("/api/v1/models/", json={"name": "staff"}).status_code == 201
    ruby = upload(client, face(RED))
    enrolled = client.post("/api/v1/models/staff/persons/", json={"name": "Ruby", "sources": [ruby["uri"]]})
    assert enrolled.status_code == 201, enrolled.text
    assert enrolled.json()["templates_added"] == 1
    return "staff"


def test_upload_returns_the_storage_object_and_checks_the_digest(client: TestClient) -> None:
    data = face()
    body = upload(client, data, "../../etc/passwd.png", sha256=hashlib.sha256(data).hexdigest())
    assert set(body) >= {"id", "uri", "filename", "media_type", "size_bytes", "sha256"}
    assert body["uri"] == f"storage://{body['id']}" and body["filename"] == "passwd.png"
    assert (body["media_type"], body["size_bytes"], body["sha256"]) == (
        "image",
        len(data),
        hashlib.sha256(data).hexdigest(),
    )
    assert client.get(f"/api/v1/storage/{body['id']}").json() == body
    assert client.get(f"/api/v1/storage/{body['id']}/file").content == data
    assert client.delete(f"/api/v1/storage/{body['id']}").status_code == 204
    missing = client.get(f"/api/v1/storage/{body['id']}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "upload_not_found"


def test_image_job_is_queued_run_by_a_worker_and_read_page_by_page(client: TestClient, runner: Runner) -> None:
    staff = _gallery_with_ruby(client)
    sources = [upload(client, face(RED))["uri"], upload(client, make_two_face_png(RED, BLUE))["uri"]]
    created = client.post(
        "/api/v1/jobs/",
        json={"sources": sources, "modules": {"face_recognition": {"model": staff, "enable_top_k": True}}, "tag": "t1"},
    )
    assert created.status_code == 201, created.text
    job: dict[str, Any] = created.json()
    assert job["state"] == "waiting" and job["media_type"] == "image" and job["progress"] == 0
    assert runner.run_all() == 1
    done = client.get(f"/api/v1/jobs/{job['id']}/").json()
    assert done["state"] == "completed" and done["progress"] == 1.0 and done["errors"] == []
    assert done["modules"]["face_recognition"]["state"] == "completed"
    assert done["result"]["detailed_link"].endswith(f"/api/v1/jobs/{job['id']}/detailed-results/")
    assert [len(entry["items"]) for entry in done["result"]["summary"]] == [1, 2]
    first = client.get(f"/api/v1/jobs/{job['id']}/detailed-results/", params={"limit": 2}).json()
    assert (first["total"], first["offset"], first["limit"], first["prev"]) == (3, 0, 2, None)
    assert "offset=2" in first["next"]
    second = client.get(first["next"]).json()
    assert second["next"] is None and len(second["data"]) == 1 and "offset=0" in second["prev"]
    items = first["data"] + second["data"]
    assert [i["source"] for i in items] == [sources[0], sources[1], sources[1]]
    assert sorted(i["meta"]["person"] for i in items) == ["Ruby", "Ruby", "unknown"]
    listed = client.get("/api/v1/jobs/", params={"tag": "t1", "state": "completed"}).json()
    assert listed["total"] == 1 and listed["data"][0]["id"] == job["id"]


def test_bad_module_parameters_are_422_naming_the_field(client: TestClient) -> None:
    source = upload(client, face())["uri"]
    cases = [
        ({"face_recognition": {"top_k": 11}}, "modules.face_recognition.top_k"),
        ({"face_recognition": {"max_distance": 2.5}}, "modules.face_recognition.max_distance"),
        ({"face_recognition": {"face_detection_scale": 50}}, "modules.face_recognition.face_detection_scale"),
        ({"face_recognition": {"typo": 1}}, "modules.face_recognition.typo"),
        ({}, "modules"),
    ]
    for modules, field in cases:
        response = client.post("/api/v1/jobs/", json={"sources": [source], "modules": modules})
        assert response.status_code == 422, modules
        body = response.json()
        assert body["error"]["code"] == "invalid_request" and body["error"]["message"].startswith(field)
        assert body["request_id"] == response.headers["x-request-id"]


def test_sources_are_storage_uris_only(client: TestClient) -> None:
    for source in ["/etc/passwd", "file:///etc/passwd", "http://169.254.169.254/", "storage://../../x"]:
        response = client.post("/api/v1/jobs/", json={"sources": [source], "modules": {"face_recognition": {}}})
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_source", source
    unknown = client.post(
        "/api/v1/jobs/", json={"sources": ["storage://" + "0" * 32], "modules": {"face_recognition": {}}}
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "upload_not_found"


def test_cancel_a_waiting_job(client: TestClient) -> None:
    source = upload(client, face())["uri"]
    job = client.post("/api/v1/jobs/", json={"sources": [source], "modules": {"face_recognition": {}}}).json()
    cancelled = client.delete(f"/api/v1/jobs/{job['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert client.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "cancelled"


def test_galleries_and_persons(client: TestClient) -> None:
    staff = _gallery_with_ruby(client)
    assert client.post("/api/v1/models/", json={"name": "staff"}).json()["error"]["code"] == "gallery_exists"
    assert client.post("/api/v1/models/", json={"name": "../x"}).status_code == 422
    listed = client.get("/api/v1/models/").json()
    assert listed["total"] == 1 and listed["data"][0]["id"] == "staff" and listed["data"][0]["persons"] == 1
    persons = client.get(f"/api/v1/models/{staff}/persons/").json()["data"]
    person_id = persons[0]["person_id"]
    two = upload(client, make_two_face_png(RED, BLUE))["uri"]
    skipped = client.post(f"/api/v1/models/{staff}/persons/", json={"name": "Ruby", "sources": [two]}).json()
    assert [s["code"] for s in skipped["skipped"]] == ["several_faces"]
    renamed = client.patch(f"/api/v1/models/{staff}/persons/{person_id}", json={"name": "Ruby R."})
    assert renamed.json()["name"] == "Ruby R."
    assert client.delete(f"/api/v1/models/{staff}/persons/{person_id}").status_code == 204
    assert client.get(f"/api/v1/models/{staff}/persons/").json()["total"] == 0
    assert client.delete(f"/api/v1/models/{staff}").status_code == 204
    assert client.get(f"/api/v1/models/{staff}").json()["error"]["code"] == "gallery_not_found"


def test_compare_by_uris_and_by_files(client: TestClient) -> None:
    a, b, c = (upload(client, face(rgb))["uri"] for rgb in (RED, RED, BLUE))
    same = client.post("/api/v1/compare", json={"a": a, "b": b})
    assert same.status_code == 200, same.text
    assert same.json()["match"] is True and {"probability", "similarity", "threshold"} <= set(same.json())
    assert client.post("/api/v1/compare", json={"a": a, "b": c}).json()["match"] is False
    kept = len(list(client.app.state.service.layout.uploads_dir.iterdir()))  # type: ignore[attr-defined]
    files = client.post("/api/v1/compare", files={"a": ("a.png", face(RED)), "b": ("b.png", face(BLUE))})
    assert files.status_code == 200 and files.json()["match"] is False
    assert (files.json()["a"], files.json()["b"]) == ("a.png", "b.png")
    assert len(list(client.app.state.service.layout.uploads_dir.iterdir())) == kept  # type: ignore[attr-defined]
    blank = upload(client, b"GIF89a" + b"\x00" * 30)["uri"]
    bad = client.post("/api/v1/compare", json={"a": a, "b": blank})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "decode_error"


def test_detect_gives_boxes(client: TestClient) -> None:
    source = upload(client, make_two_face_png(RED, BLUE))["uri"]
    found = client.post("/api/v1/detect", json={"source": source})
    assert found.status_code == 200, found.text
    assert len(found.json()["faces"]) == 2 and len(found.json()["faces"][0]["bbox_xyxy"]) == 4
    by_file = client.post("/api/v1/detect", files={"file": ("x.png", face())})
    assert len(by_file.json()["faces"]) == 1 and by_file.json()["source"] == "x.png"


def test_unknown_route_and_job_are_json_errors(client: TestClient) -> None:
    assert client.get("/api/v1/nothing").json()["error"]["code"] == "not_found"
    missing = client.get("/api/v1/jobs/nope/")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/openapi.json").status_code == 200


def test_a_job_naming_a_missing_gallery_is_refused_before_it_is_queued(client: TestClient) -> None:
    source = upload(client, face())["uri"]
    for params in ({"model": "nobody"}, {"models": ["../../etc/x"]}):
        response = client.post("/api/v1/jobs/", json={"sources": [source], "modules": {"face_recognition": params}})
        assert response.json()["error"]["code"] == "gallery_not_found", params
    assert client.get("/api/v1/jobs/").json()["total"] == 0
