"""Hostile uploads: wrong type, truncated, huge, path-like names, digest mismatches; nothing half-written."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest
from fastapi.testclient import TestClient

from faceprint.server.settings import ServerSettings

from .conftest import face, upload


def _stored(settings: ServerSettings) -> list[str]:
    folder = settings.layout.uploads_dir
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize(
    ("data", "code", "status"),
    [
        (b"#!/bin/sh\nrm -rf /\n", "unsupported_media", 415),
        (b"<html><script>alert(1)</script></html>", "unsupported_media", 415),
        (b"", "unsupported_media", 415),
    ],
)
def test_wrong_type_is_refused_by_content(
    client: TestClient, settings: ServerSettings, data: bytes, code: str, status: int
) -> None:
    response = client.post("/api/v1/storage/", files={"file": ("photo.jpg", data)})
    assert response.status_code == status and response.json()["error"]["code"] == code
    assert _stored(settings) == []  # no temp file left behind


def test_huge_upload_is_413_and_leaves_nothing(client: TestClient, settings: ServerSettings) -> None:
    huge = b"\x89PNG\r\n\x1a\n" + b"\x00" * (settings.max_upload_bytes + 10)
    response = client.post("/api/v1/storage/", files={"file": ("big.png", huge)})
    assert response.status_code == 413 and response.json()["error"]["code"] == "upload_too_large"
    assert _stored(settings) == []


def test_huge_upload_without_content_length_is_cut_while_streaming(settings: ServerSettings) -> None:
    from faceprint.jobs.uploads import UploadStore, UploadTooLargeError

    store = UploadStore(settings.layout.uploads_dir)
    with pytest.raises(UploadTooLargeError):
        store.save(io.BytesIO(b"\xff\xd8\xff" + b"0" * 5000), filename="x.jpg", max_bytes=4096)
    assert _stored(settings) == []


def test_truncated_upload_is_caught_by_its_digest(client: TestClient, settings: ServerSettings) -> None:
    data = face()
    response = client.post(
        "/api/v1/storage/",
        files={"file": ("a.png", data[: len(data) // 2])},
        data={"sha256": hashlib.sha256(data).hexdigest()},
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "upload_digest_mismatch"
    assert _stored(settings) == []


def test_truncated_image_without_digest_is_stored_and_fails_per_item(client: TestClient, runner: object) -> None:
    data = face()
    body = upload(client, data[: len(data) // 2], "half.png")
    job = client.post("/api/v1/jobs/", json={"sources": [body["uri"]], "modules": {"face_recognition": {}}}).json()
    runner.run_all()  # type: ignore[attr-defined]
    done = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert done["state"] == "completed" and [e["code"] for e in done["errors"]] == ["decode_error"]


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("../../../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\a.png", "a.png"),
        ("/absolute/face.png", "face.png"),
        ("..", "upload"),
        ("a\x00b\r\n.png", None),  # the client percent-encodes it; harmless either way
    ],
)
def test_path_like_names_never_become_paths(
    client: TestClient, settings: ServerSettings, name: str, shown: str | None
) -> None:
    body = upload(client, face(), name)
    if shown is not None:
        assert body["filename"] == shown
    assert "/" not in body["filename"] and "\\" not in body["filename"] and body["filename"].isprintable()
    assert _stored(settings) == [body["id"]]  # stored under its id, nowhere else
    assert not (settings.data_dir.parent / "etc").exists()


def test_a_tar_upload_is_an_archive(client: TestClient) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("pairs.csv")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"a,b"))
    assert upload(client, buffer.getvalue(), "d.tar")["media_type"] == "archive"


def test_clean_filename_drops_control_characters() -> None:
    from faceprint.jobs.uploads import clean_filename

    assert clean_filename("a\x00b\r\n.png") == "ab.png"
    assert clean_filename("dir/\u202egnp.exe") == "gnp.exe"
