"""Confidential job service: uploads are deleted when their jobs end, orphans at start-up; then the audit is clean."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from faceprint.audit import audit_data_dir
from faceprint.jobs.model import JobState, NewJob
from faceprint.jobs.retention import release_job_uploads, sweep_uploads
from faceprint.jobs.store import SqliteJobStore
from faceprint.jobs.uploads import UploadStore


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(out, "JPEG")
    return out.getvalue()


def _upload(uploads: UploadStore) -> str:
    return uploads.save(io.BytesIO(_jpeg()), filename="face.jpg", max_bytes=1 << 20).uri


def test_an_ended_job_releases_its_uploads_but_not_those_others_need(tmp_path: Path) -> None:
    uploads = UploadStore(tmp_path / "uploads")
    own, shared = _upload(uploads), _upload(uploads)
    with SqliteJobStore(tmp_path / "jobs.sqlite") as store:
        first = store.create(NewJob(kind="face_recognition", sources=(own, shared)))
        second = store.create(NewJob(kind="face_recognition", sources=(shared,)))
        claimed = store.claim("w1", lease_s=30)
        assert claimed is not None and claimed.id == first.id
        assert release_job_uploads(claimed, store, uploads) == []  # still running: kept
        ended = store.finish(first.id, "w1", state=JobState.FAILED)
        assert release_job_uploads(ended, store, uploads) == [own.removeprefix("storage://")]
        assert not audit_data_dir(tmp_path).clean  # the shared upload is still there for the second job
        cancelled = store.request_cancel(second.id)
        assert release_job_uploads(cancelled, store, uploads) == [shared.removeprefix("storage://")]
    report = audit_data_dir(tmp_path)
    assert [f for f in report.findings if f.path.is_relative_to(tmp_path / "uploads")] == []


def test_start_up_sweep_deletes_orphans_and_partial_uploads(tmp_path: Path) -> None:
    uploads_dir = tmp_path / "uploads"
    uploads = UploadStore(uploads_dir)
    orphan, needed = _upload(uploads), _upload(uploads)
    (uploads_dir / ".upload.abc.tmp").write_bytes(_jpeg()[:100])  # a crash mid-upload
    half = uploads_dir / ("e" * 32)
    half.mkdir()
    (half / "data").write_bytes(_jpeg())  # a crash between data and meta.json
    with SqliteJobStore(tmp_path / "jobs.sqlite") as store:
        store.create(NewJob(kind="face_pairs", sources=(needed,)))
        deleted = sweep_uploads(store, uploads_dir)
        assert sorted(deleted) == sorted([".upload.abc.tmp", "e" * 32, orphan.removeprefix("storage://")])
        assert sorted(p.name for p in uploads_dir.iterdir()) == [needed.removeprefix("storage://")]
        # With a grace time, a fresh upload (its job not created yet) stays.
        fresh = _upload(uploads)
        assert sweep_uploads(store, uploads_dir, min_age_s=3600) == []
        old = time.time() - 7200
        os.utime(uploads_dir / fresh.removeprefix("storage://"), (old, old))
        assert sweep_uploads(store, uploads_dir, min_age_s=3600) == [fresh.removeprefix("storage://")]


def test_a_confidential_service_deletes_enrolment_photos_once_enrolled(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from faceprint.server.app import create_app
    from faceprint.server.settings import ServerSettings
    from faceprint.testing import make_face_png

    def run(confidential: bool) -> tuple[int, int, int]:
        settings = ServerSettings(
            data_dir=tmp_path / str(confidential),
            api_keys="k",
            pipeline_factory="faceprint.testing:fake_pipeline_factory",
            confidential=confidential,
        )
        with TestClient(create_app(settings), headers={"Authorization": "Key k"}) as client:
            assert client.post("/api/v1/models/", json={"name": "staff"}).status_code == 201

            def put(rgb: tuple[int, int, int]) -> str:
                uri: str = client.post("/api/v1/storage/", files={"file": ("a.png", make_face_png(rgb))}).json()["uri"]
                return uri

            alone, shared = put((200, 20, 20)), put((20, 200, 20))
            # ``shared`` is also the source of a job still waiting: it must stay for that job.
            job = client.post("/api/v1/jobs/", json={"sources": [shared], "modules": {"face_recognition": {}}})
            assert job.status_code in (200, 201), job.text
            enrolled = client.post("/api/v1/models/staff/persons/", json={"name": "Ruby", "sources": [alone, shared]})
            assert enrolled.status_code == 201, enrolled.text
            refused = client.post("/api/v1/models/staff/persons/", json={"name": "Ruby", "sources": [alone]})
            return (
                client.get(f"/api/v1/storage/{alone.removeprefix('storage://')}").status_code,
                client.get(f"/api/v1/storage/{shared.removeprefix('storage://')}").status_code,
                refused.status_code,
            )

    assert run(confidential=False) == (200, 200, 201)
    assert run(confidential=True) == (404, 200, 404)  # gone once enrolled; kept for the waiting job
