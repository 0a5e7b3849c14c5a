"""Real processes: SIGKILL of a worker or of the server in the middle of a job loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from faceprint.jobs.recognition import CHUNK_IMAGES
from faceprint.testing import make_face_png

from .procs import api, children, free_port, start_server, start_worker, stop, wait_for

PHOTOS = 40
RED = (200, 20, 20)
GREEN = (20, 200, 20)

pytestmark = pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc to find worker processes")


def _job(client: httpx.Client) -> tuple[str, list[str]]:
    assert client.post("/api/v1/models/", json={"name": "staff"}).status_code == 201
    ruby = client.post("/api/v1/storage/", files={"file": ("ruby.png", make_face_png(RED))}).json()["uri"]
    assert client.post("/api/v1/models/staff/persons/", json={"name": "Ruby", "sources": [ruby]}).status_code == 201
    sources = [
        client.post("/api/v1/storage/", files={"file": (f"{i}.png", make_face_png(RED if i % 2 else GREEN))}).json()[
            "uri"
        ]
        for i in range(PHOTOS)
    ]
    job = client.post("/api/v1/jobs/", json={"sources": sources, "modules": {"face_recognition": {"model": "staff"}}})
    assert job.status_code == 201
    return job.json()["id"], sources


def _mid_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        page = client.get(f"/api/v1/jobs/{job_id}/detailed-results/", params={"limit": 1}).json()
        job: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}/").json()
        last.update(state=job["state"], progress=job["progress"], items=page["total"], errors=job["errors"])
        return job if page["total"] >= CHUNK_IMAGES and job["state"] == "running" else None

    job: dict[str, Any] = wait_for(check, timeout_s=90, what="the job to be under way", poll_s=0.05, seen=lambda: last)
    return job


def _completed(client: httpx.Client, job_id: str, progress_seen: list[float]) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}/").json()
        progress_seen.append(job["progress"])
        return job if job["state"] in ("completed", "failed") else None

    job: dict[str, Any] = wait_for(check, timeout_s=120, what="the job to complete", poll_s=0.2)
    return job


def _assert_all_results(client: httpx.Client, job_id: str, sources: list[str]) -> None:
    items: list[dict[str, Any]] = []
    url: str | None = f"/api/v1/jobs/{job_id}/detailed-results/?limit=7"
    while url is not None:
        page = client.get(url).json()
        items.extend(page["data"])
        url = page["next"]
    assert len(items) == PHOTOS
    assert len({item["id"] for item in items}) == PHOTOS  # nothing twice
    assert [item["source"] for item in items] == sources  # nothing lost, in order
    assert [item["meta"]["person"] for item in items] == ["Ruby" if i % 2 else "unknown" for i in range(PHOTOS)]


@pytest.mark.slow
def test_sigkill_of_a_worker_mid_job_loses_nothing(tmp_path: Path) -> None:
    port = free_port()
    server = start_server(tmp_path / "data", port, workers=1)
    try:
        with api(port) as client:
            worker_pid = wait_for(lambda: children(server.pid), timeout_s=30, what="the worker process")[0]
            job_id, sources = _job(client)
            before = _mid_job(client, job_id)
            os.kill(worker_pid, signal.SIGKILL)
            # serve starts another worker; it claims the job once the killed one's lease expires.
            seen = [before["progress"]]
            done = _completed(client, job_id, seen)
            assert done["state"] == "completed" and done["attempts"] == 2, done
            assert seen == sorted(seen) and seen[-1] == 1.0  # progress never went backwards
            assert worker_pid not in children(server.pid)
            _assert_all_results(client, job_id, sources)
    finally:
        stop(server)


@pytest.mark.slow
def test_sigkill_of_the_server_mid_job_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    server = start_server(data, port)
    worker: subprocess.Popen[bytes] | None = None
    try:
        with api(port) as client:
            job_id, sources = _job(client)
            queued = client.post(  # a second job, still waiting when the server dies
                "/api/v1/jobs/", json={"sources": sources[:3], "modules": {"face_recognition": {}}}
            ).json()["id"]
            worker = start_worker(data)
            _mid_job(client, job_id)
        server.send_signal(signal.SIGKILL)
        server.wait()
        server = start_server(data, port)
        with api(port) as client:
            done = _completed(client, job_id, [])
            assert done["state"] == "completed" and done["attempts"] == 1
            _assert_all_results(client, job_id, sources)
            assert _completed(client, queued, [])["state"] == "completed"
    finally:
        stop(server)
        if worker is not None:
            stop(worker)


@pytest.mark.slow
def test_cancel_stops_a_running_job_in_its_worker(tmp_path: Path) -> None:
    port = free_port()
    server = start_server(tmp_path / "data", port, workers=1)
    try:
        with api(port) as client:
            job_id, _ = _job(client)
            _mid_job(client, job_id)
            assert client.delete(f"/api/v1/jobs/{job_id}").json()["state"] == "running"  # flagged, stopping
            done = wait_for(
                lambda: (j := client.get(f"/api/v1/jobs/{job_id}/").json())["state"] != "running" and j,
                timeout_s=60,
                what="the job to stop",
            )
            assert done["state"] == "cancelled" and done["progress"] < 1.0
            items = client.get(f"/api/v1/jobs/{job_id}/detailed-results/", params={"limit": 1000}).json()["total"]
            assert items < PHOTOS  # it stopped part-way; what was done is kept
    finally:
        stop(server)


@pytest.mark.slow
def test_confidential_sigkill_mid_job_leaves_no_clear_input_after_restart(tmp_path: Path) -> None:
    from faceprint.audit import audit_data_dir
    from faceprint.crypto import EncryptionKey

    data = tmp_path / "data"
    env = {"FACEPRINT_CONFIDENTIAL": "1", "FACEPRINT_ENCRYPTION_KEY": EncryptionKey.generate().to_base64()}
    port = free_port()
    server = start_server(data, port, workers=1, env=env)
    try:
        with api(port) as client:
            worker_pid = wait_for(lambda: children(server.pid), timeout_s=30, what="the worker process")[0]
            job_id, sources = _job(client)
            _mid_job(client, job_id)
            # While the job runs its uploads are on disk, sealed: no photo in clear.
            raw = b"".join(p.read_bytes() for p in (data / "uploads").rglob("*") if p.is_file())
            assert raw and b"\x89PNG" not in raw
            os.kill(worker_pid, signal.SIGKILL)
            done = _completed(client, job_id, [])
            assert done["state"] == "completed" and done["attempts"] == 2, done
            _assert_all_results(client, job_id, sources)
            job_uploads = {uri.removeprefix("storage://") for uri in sources}
            wait_for(
                lambda: not job_uploads & {p.name for p in (data / "uploads").iterdir()},
                timeout_s=30,
                what="the ended job's uploads to be deleted",
            )
    finally:
        stop(server)
    # Nothing is left: the job's uploads went when it ended, the enrolment photo when its enrolment returned.
    assert not list((data / "uploads").iterdir())
    report = audit_data_dir(data)
    assert report.clean, report.findings
    raw = b"".join(p.read_bytes() for p in data.rglob("*") if p.is_file())
    assert b"\x89PNG" not in raw and b"ruby.png" not in raw
