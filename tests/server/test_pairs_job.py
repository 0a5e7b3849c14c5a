"""The face_pairs job: its TAR.GZ is byte-identical to ``faceprint pairs`` on the same dataset."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from faceprint.cli.common import CliContext
from faceprint.cli.main import app
from faceprint.settings import Settings
from faceprint.testing import fake_pipeline_factory, make_face_png

from .conftest import BLUE, RED, Runner, upload


def _dataset_tar() -> bytes:
    files = {
        "red.png": make_face_png(RED),
        "red2.png": make_face_png((190, 25, 25)),
        "blue.png": make_face_png(BLUE),
        "pairs.csv": b"red.png,red2.png\nred.png,blue.png\nred.png,missing.png\n",
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_pairs_job_result_is_byte_identical_to_the_cli(client: TestClient, runner: Runner, tmp_path: Path) -> None:
    data = _dataset_tar()
    dataset = upload(client, data, "dataset.tar")
    job = client.post(
        "/api/v1/jobs/", json={"sources": [dataset["uri"]], "modules": {"face_pairs": {"details": True}}}
    ).json()
    assert job["media_type"] == "archive"
    not_yet = client.get(f"/api/v1/jobs/{job['id']}/result")
    assert not_yet.status_code == 409 and not_yet.json()["error"]["code"] == "job_state_conflict"
    assert runner.run_all() == 1
    done = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert done["state"] == "completed", done
    processing = done["result"]["summary"][0]["processing"]
    assert (processing["rows"], processing["scored"], processing["failed"]) == (3, 2, 1)
    assert done["result"]["download_link"].endswith(f"/api/v1/jobs/{job['id']}/result")
    served = client.get(f"/api/v1/jobs/{job['id']}/result")
    assert served.status_code == 200 and served.headers["content-type"] == "application/gzip"

    local = tmp_path / "cli"
    local.mkdir()
    (local / "dataset.tar").write_bytes(data)
    out = tmp_path / "cli-results.tar.gz"
    result = CliRunner().invoke(
        app,
        ["pairs", str(local / "dataset.tar"), "-o", str(out), "--details", "--workers", "1", "--quiet"],
        obj=CliContext(settings=Settings(), pipeline_factory=fake_pipeline_factory),
    )
    assert result.exit_code in (0, 1), result.output
    assert served.content == out.read_bytes()


def test_pairs_sources_must_be_archives(client: TestClient, runner: Runner) -> None:
    image = upload(client, make_face_png(RED))
    refused = client.post("/api/v1/jobs/", json={"sources": [image["uri"]], "modules": {"face_pairs": {}}})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_source"
    # A ZIP dataset is an archive like a TAR: it runs.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pairs.csv", "a.png,b.png\n")
        archive.writestr("a.png", make_face_png(RED))
        archive.writestr("b.png", make_face_png(RED))
    zipped = upload(client, buffer.getvalue(), "d.zip")
    job = client.post("/api/v1/jobs/", json={"sources": [zipped["uri"]], "modules": {"face_pairs": {}}}).json()
    runner.run_all()
    done = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert done["state"] == "completed" and done["errors"] == []


def test_both_modules_at_once_are_refused(client: TestClient) -> None:
    image = upload(client, make_face_png(RED))
    response = client.post(
        "/api/v1/jobs/", json={"sources": [image["uri"]], "modules": {"face_pairs": {}, "face_recognition": {}}}
    )
    assert response.status_code == 422 and "exactly one module" in response.json()["error"]["message"]
