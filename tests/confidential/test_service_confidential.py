"""The job service in confidential mode with a key: after a gallery enrolment, an image job, a video job and a
pairs job, the data dir holds no image, no plaintext vector, no upload and no upload name, and the answers
are those of the same service with both off."""

from __future__ import annotations

import base64
import io
import tarfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from faceprint.analyze import Analyzer
from faceprint.audit import audit_data_dir
from faceprint.crypto import EncryptionKey, open_sealed
from faceprint.jobs.context import result_context
from faceprint.jobs.store import SqliteJobStore
from faceprint.jobs.video import video_available
from faceprint.jobs.worker import JobWorker
from faceprint.server.app import create_app
from faceprint.server.settings import ServerSettings
from faceprint.testing import fake_pipeline_factory, make_face_png

KEY = "confidential-test-key"
FAKE = "faceprint.testing:fake_pipeline_factory"
RED, BLUE, GREEN = (200, 20, 20), (20, 20, 200), (20, 200, 20)
NAMES = ("ruby-portrait.png", "visitor-7.png", "lobby-camera.mp4", "holiday-pairs.tgz")

pytestmark = pytest.mark.skipif(not video_available(), reason="the video pipeline (PyAV) is not installed")


def _clip(path: Path) -> bytes:
    from faceprint.video.synthetic import SceneFace, render_scene, write_video

    face = np.zeros((40, 40, 3), np.uint8)
    face[:] = RED
    scene = [SceneFace(face, start_frame=0, end_frame=19, start_xy=(8, 8), end_xy=(30, 8), height_px=40)]
    write_video(path, render_scene((96, 64), 20, scene), fps=Fraction(10))
    return path.read_bytes()


def _dataset() -> bytes:
    files = {
        "red.png": make_face_png(RED),
        "red2.png": make_face_png((190, 25, 25)),
        "blue.png": make_face_png(BLUE),
        "pairs.csv": b"red.png,red2.png\nred.png,blue.png\n",
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _settings(root: Path, *, confidential: bool) -> ServerSettings:
    extra: dict[str, Any] = {}
    if confidential:
        extra = {"confidential": True, "encryption_key": EncryptionKey.generate().to_base64()}
    return ServerSettings(data_dir=root, api_keys=KEY, pipeline_factory=FAKE, **extra)


def _run_jobs(settings: ServerSettings) -> int:
    """Every queued job, as ``faceprint worker`` runs them (the settings' cipher and confidential mode)."""
    cipher = settings.cipher()
    count = 0
    with (
        SqliteJobStore(settings.layout.jobs_db, cipher=cipher) as store,
        Analyzer(workers=1, executor="local", pipeline_factory=fake_pipeline_factory) as analyzer,
    ):
        worker = JobWorker(
            store, settings.layout, analyzer, config=settings.worker_config, pipeline_factory_ref=FAKE, cipher=cipher
        )
        assert worker.sweep_orphans() == []  # nothing is an orphan while jobs wait
        while worker.run_once():
            count += 1
    return count


def _label(person: str) -> str:
    """An indexed unknown's id is random per service: compared as "an indexed unknown"."""
    return "unknown-<indexed>" if person.startswith("unknown-") else person


def _pages(client: TestClient, job_id: str) -> Iterator[dict[str, Any]]:
    url: str | None = f"/api/v1/jobs/{job_id}/detailed-results/?limit=5"
    while url is not None:
        page = client.get(url).json()
        yield from page["data"]
        url = page["next"]


def _service_run(root: Path, *, confidential: bool, clip: bytes) -> dict[str, Any]:
    settings = _settings(root, confidential=confidential)
    with TestClient(create_app(settings), headers={"Authorization": f"Key {KEY}"}) as client:

        def upload(data: bytes, name: str) -> str:
            response = client.post("/api/v1/storage/", files={"file": (name, data)})
            assert response.status_code == 201, response.text
            uri: str = response.json()["uri"]
            return uri

        assert client.post("/api/v1/models/", json={"name": "staff"}).status_code == 201
        ruby = upload(make_face_png(RED), NAMES[0])
        enrolled = client.post("/api/v1/models/staff/persons/", json={"name": "Ruby", "sources": [ruby]})
        assert enrolled.status_code == 201 and enrolled.json()["templates_added"] == 1
        client.delete(f"/api/v1/storage/{ruby.removeprefix('storage://')}")  # the enrolment photo is not kept
        sources = [upload(make_face_png(RED), NAMES[0]), upload(make_face_png(GREEN), NAMES[1]), upload(clip, NAMES[2])]
        recognition = client.post(
            "/api/v1/jobs/",
            json={
                "sources": sources,
                "modules": {"face_recognition": {"model": "staff", "index_unknowns": True, "enable_top_k": True}},
            },
        ).json()["id"]
        pairs = client.post(
            "/api/v1/jobs/", json={"sources": [upload(_dataset(), NAMES[3])], "modules": {"face_pairs": {}}}
        ).json()["id"]
        assert _run_jobs(settings) == 2
        done = {job: client.get(f"/api/v1/jobs/{job}").json() for job in (recognition, pairs)}
        assert all(d["state"] == "completed" and d["errors"] == [] for d in done.values()), done
        items = [
            (item["media_type"], _label(item["meta"]["person"]), item["meta"]["mean_similarity"], item.get("thumbnail"))
            for item in _pages(client, recognition)
        ]
        result = client.get(f"/api/v1/jobs/{pairs}/result")
        assert result.status_code == 200
        stored = (root / "results" / f"{pairs}.tar.gz").read_bytes()
        if confidential:
            cipher = settings.cipher()
            assert cipher is not None
            with open_sealed(io.BytesIO(stored), cipher, context=result_context(pairs)) as handle:
                assert handle.read() == result.content  # the download is the sealed file, decrypted
        with tarfile.open(fileobj=io.BytesIO(result.content)) as tar:
            output = next(m for m in tar.getmembers() if m.name.endswith("output.csv"))
            handle = tar.extractfile(output)
            assert handle is not None
            csv = handle.read().decode()
        return {"items": items, "pairs_csv": csv, "settings": settings}


def _raw(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_confidential_service_keeps_no_face_data_and_answers_the_same(tmp_path: Path) -> None:
    clip = _clip(tmp_path / "clip.mp4")
    plain = _service_run(tmp_path / "plain", confidential=False, clip=clip)
    secret = _service_run(tmp_path / "secret", confidential=True, clip=clip)

    # The same answers: persons, similarities and the pairs archive (thumbnails aside: off when confidential).
    assert [i[:3] for i in secret["items"]] == [i[:3] for i in plain["items"]]
    assert {i[0] for i in plain["items"]} == {"image", "video"}
    assert secret["pairs_csv"] == plain["pairs_csv"]
    assert [i[3] for i in secret["items"] if i[0] == "video"] == [None] * sum(i[0] == "video" for i in secret["items"])
    assert any(i[3] is not None for i in plain["items"] if i[0] == "video")  # on by default otherwise

    root = tmp_path / "secret"
    report = audit_data_dir(root)
    assert report.clean, [(f.path, f.kind, f.what) for f in report.findings]
    assert not any((root / "uploads").iterdir())  # every upload went when its job ended
    raw = _raw(root)
    for marker in (b"\x89PNG", b"\xff\xd8\xff", b"ftyp", b"/9j/", b"iVBOR", *(n.encode() for n in NAMES)):
        assert marker not in raw, marker
    # The same scan finds what a service with both off keeps (so the scan can see it).
    plain_report = audit_data_dir(tmp_path / "plain")
    assert not plain_report.clean
    plain_raw = _raw(tmp_path / "plain")
    assert b"\x89PNG" in plain_raw and NAMES[1].encode() in plain_raw
    assert base64.b64encode(b"\xff\xd8\xff")[:3] in plain_raw or b"/9j/" in plain_raw  # a JPEG thumbnail


def _keyed_run(root: Path, key: EncryptionKey, clip: bytes) -> tuple[list[str], list[str]]:
    """A service with a key only (uploads kept): enrol, a recognition job (index on) and a pairs job;
    returns the upload ids and the job ids."""
    settings = ServerSettings(data_dir=root, api_keys=KEY, pipeline_factory=FAKE, encryption_key=key.to_base64())
    with TestClient(create_app(settings), headers={"Authorization": f"Key {KEY}"}) as client:

        def upload(data: bytes, name: str) -> str:
            uri: str = client.post("/api/v1/storage/", files={"file": (name, data)}).json()["uri"]
            return uri

        assert client.post("/api/v1/models/", json={"name": "staff"}).status_code == 201
        ruby = upload(make_face_png(RED), NAMES[0])
        assert client.post("/api/v1/models/staff/persons/", json={"name": "Ruby", "sources": [ruby]}).status_code == 201
        sources = [upload(make_face_png(RED), NAMES[0]), upload(make_face_png(GREEN), NAMES[1]), upload(clip, NAMES[2])]
        params = {"model": "staff", "index_unknowns": True, "enable_top_k": True, "thumbnails": True}
        recognition = client.post(
            "/api/v1/jobs/", json={"sources": sources, "modules": {"face_recognition": params}}
        ).json()["id"]
        dataset = upload(_dataset(), NAMES[3])
        pairs = client.post("/api/v1/jobs/", json={"sources": [dataset], "modules": {"face_pairs": {}}}).json()["id"]
    assert _run_jobs(settings) == 2
    return [u.removeprefix("storage://") for u in (ruby, *sources, dataset)], [recognition, pairs]


def _read_all(root: Path, key: EncryptionKey, uploads: list[str], jobs: list[str]) -> dict[str, Any]:
    """Everything the service answers about that data under ``key`` alone."""
    settings = ServerSettings(data_dir=root, api_keys=KEY, pipeline_factory=FAKE, encryption_key=key.to_base64())
    with TestClient(create_app(settings), headers={"Authorization": f"Key {KEY}"}) as client:
        files = [client.get(f"/api/v1/storage/{u}/file") for u in uploads]
        assert all(f.status_code == 200 for f in files), [f.text for f in files]
        records = [client.get(f"/api/v1/storage/{u}").json() for u in uploads]
        job_views = [client.get(f"/api/v1/jobs/{j}").json() for j in jobs]
        items = list(_pages(client, jobs[0]))
        result = client.get(f"/api/v1/jobs/{jobs[1]}/result")
        assert result.status_code == 200, result.text
        persons = client.get("/api/v1/models/staff/persons/").json()
        compare = client.post(
            "/api/v1/jobs/",
            json={"sources": [f"storage://{uploads[1]}"], "modules": {"face_recognition": {"model": "staff"}}},
        ).json()["id"]
        assert _run_jobs(settings) == 1
        again = [(i["meta"]["person"], i["meta"]["mean_similarity"]) for i in _pages(client, compare)]
    return {
        "files": [f.content for f in files],
        "records": records,
        "jobs": [(v["state"], v["errors"]) for v in job_views],
        "items": items,
        "result": result.content,
        "persons": persons,
        "identify": again,
    }


def test_rotating_a_data_dir_keeps_every_answer_and_survives_a_crash(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from faceprint.cli.common import CliContext
    from faceprint.cli.main import app
    from faceprint.crypto import RecordCipher
    from faceprint.jobs.rotation import rotate_data_dir
    from faceprint.settings import Settings

    root = tmp_path / "data"
    old, new = EncryptionKey.generate(), EncryptionKey.generate()
    old_file, new_file = tmp_path / "old.key", tmp_path / "new.key"
    old.write_file(old_file)
    new.write_file(new_file)
    uploads, jobs = _keyed_run(root, old, _clip(tmp_path / "clip.mp4"))
    before = _read_all(root, old, uploads, jobs)
    assert before["jobs"] == [("completed", [])] * 2 and before["items"] and before["identify"][0][0] == "Ruby"

    # A crash once the galleries and the job payloads are rotated, before uploads and results.
    keyring = RecordCipher(new, previous_keys=[old])

    class Crash(Exception):
        pass

    def crash(step: str) -> None:
        if step == "job payloads":
            raise Crash(step)

    with SqliteJobStore(root / "jobs.sqlite", cipher=keyring) as store, pytest.raises(Crash):
        rotate_data_dir(ServerSettings(data_dir=root).layout, store, keyring, after_step=crash)

    # Half-rotated: the new key alone cannot read the uploads yet, a clear error rather than garbage.
    settings = ServerSettings(data_dir=root, api_keys=KEY, pipeline_factory=FAKE, encryption_key=new.to_base64())
    with TestClient(create_app(settings), headers={"Authorization": f"Key {KEY}"}) as client:
        half = client.get(f"/api/v1/storage/{uploads[1]}/file")
        assert half.status_code >= 400 and "encryption_key_mismatch" in half.text

    result = CliRunner().invoke(
        app,
        ["keys", "rotate-encryption", "--data-dir", str(root), "--old-key-file", str(old_file)],
        obj=CliContext(Settings(encryption_key_file=new_file)),
    )
    assert result.exit_code == 0, result.output
    assert "0 job payloads" in result.output  # the crashed run had done them
    assert f"{len(uploads)} uploads and 1 result archives re-encrypted" in result.output

    after = _read_all(root, new, uploads, jobs)
    assert after["files"] == before["files"] and after["records"] == before["records"]
    assert after["jobs"] == before["jobs"] and after["items"] == before["items"]
    assert after["result"] == before["result"] and after["persons"] == before["persons"]
    assert [p for p, _ in after["identify"]] == [p for p, _ in before["identify"]]
    assert [s for _, s in after["identify"]] == pytest.approx([s for _, s in before["identify"]])

    # Nothing is left under the old key: the old key alone reads nothing now.
    settings = ServerSettings(data_dir=root, api_keys=KEY, pipeline_factory=FAKE, encryption_key=old.to_base64())
    with TestClient(create_app(settings), headers={"Authorization": f"Key {KEY}"}) as client:
        assert "encryption_key_mismatch" in client.get(f"/api/v1/storage/{uploads[0]}/file").text
        assert "encryption_key_mismatch" in client.get(f"/api/v1/jobs/{jobs[0]}").text
        assert "encryption_key_mismatch" in client.get(f"/api/v1/jobs/{jobs[1]}/result").text
    again = CliRunner().invoke(
        app,
        ["keys", "rotate-encryption", "--data-dir", str(root)],
        obj=CliContext(Settings(encryption_key_file=new_file)),
    )
    assert again.exit_code == 0 and "0 job payloads, 0 uploads and 0 result archives" in again.output
