"""Uploads sealed at rest: nothing of the photo or its name on disk, read back in place (photos, archives,
the pairs job's datasets and its sealed result), clear uploads still readable, keys checked."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from faceprint.batch.pairs import PairsOptions, run_pairs_job
from faceprint.crypto import (
    EncryptionKey,
    EncryptionKeyMismatchError,
    EncryptionKeyRequiredError,
    RecordCipher,
    open_sealed,
)
from faceprint.io.archive import Dataset, DatasetSource
from faceprint.jobs.uploads import UploadStore
from faceprint.testing import fake_pipeline_factory, make_face_png

RED, BLUE = (200, 20, 20), (20, 20, 200)


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _dataset() -> bytes:
    return _tar(
        {
            "red.png": make_face_png(RED),
            "red2.png": make_face_png((190, 25, 25)),
            "blue.png": make_face_png(BLUE),
            "pairs.csv": b"red.png,red2.png\nred.png,blue.png\nred.png,missing.png\n",
        }
    )


def _raw_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_a_sealed_upload_keeps_nothing_in_clear_and_reads_back(tmp_path: Path) -> None:
    cipher = RecordCipher(EncryptionKey.generate())
    store = UploadStore(tmp_path, cipher=cipher)
    photo = make_face_png(RED) * 50  # several 1 MiB chunks are not needed: the format is the same for one
    record = store.save(io.BytesIO(photo), filename="alice_smith.png", max_bytes=1 << 24)
    raw = _raw_bytes(tmp_path)
    assert b"\x89PNG" not in raw and b"alice_smith" not in raw and record.sha256.encode() not in raw
    assert store.get(record.id) == record
    assert store.read_bytes(record.id) == photo
    with store.open(record.id) as handle:
        handle.seek(len(photo) - 10)
        assert handle.read() == photo[-10:]
    with pytest.raises(EncryptionKeyRequiredError):
        UploadStore(tmp_path).get(record.id)
    with pytest.raises(EncryptionKeyMismatchError):
        UploadStore(tmp_path, cipher=RecordCipher(EncryptionKey.generate())).read_bytes(record.id)
    UploadStore(tmp_path).delete(record.id)  # deleting needs no key
    assert not store.exists(record.id) and not any(tmp_path.iterdir())


def test_uploads_stored_before_the_key_stay_readable(tmp_path: Path) -> None:
    clear = UploadStore(tmp_path).save(io.BytesIO(make_face_png(BLUE)), filename="b.png", max_bytes=1 << 20)
    sealed_store = UploadStore(tmp_path, cipher=RecordCipher(EncryptionKey.generate()))
    assert sealed_store.read_bytes(clear.id) == make_face_png(BLUE)


def test_a_sealed_dataset_archive_is_read_in_place(tmp_path: Path) -> None:
    cipher = RecordCipher(EncryptionKey.generate())
    store = UploadStore(tmp_path / "uploads", cipher=cipher)
    data = _dataset()
    record = store.save(io.BytesIO(data), filename="dataset.tgz", max_bytes=1 << 24)
    (tmp_path / "clear.tgz").write_bytes(data)
    with (
        Dataset(DatasetSource("dataset.tgz", lambda: store.open(record.id))) as sealed,
        Dataset(tmp_path / "clear.tgz") as clear,
    ):
        assert sealed.kind == clear.kind == "tar.gz"
        assert sealed.names == clear.names
        assert all(sealed.read(name) == clear.read(name) for name in clear.names)


def test_the_pairs_job_on_sealed_uploads_writes_a_sealed_result_equal_to_the_clear_one(tmp_path: Path) -> None:
    cipher = RecordCipher(EncryptionKey.generate())
    store = UploadStore(tmp_path / "uploads", cipher=cipher)
    data = _dataset()
    record = store.save(io.BytesIO(data), filename="dataset.tgz", max_bytes=1 << 24)
    folder = tmp_path / "clear"
    folder.mkdir()
    (folder / "dataset.tgz").write_bytes(data)
    options = PairsOptions(details=True, quiet=True, workers=1)
    clear = run_pairs_job(
        [folder / "dataset.tgz"], tmp_path / "clear.tar.gz", options=options, pipeline_factory=fake_pipeline_factory
    )
    sealed = run_pairs_job(
        [DatasetSource("dataset.tgz", lambda: store.open(record.id))],
        tmp_path / "sealed.tar.gz",
        options=options,
        pipeline_factory=fake_pipeline_factory,
        output_cipher=cipher,
        output_context="jobs/j1/result",
    )
    assert [d.scored for d in sealed.datasets] == [d.scored for d in clear.datasets] == [2]
    sealed_bytes = (tmp_path / "sealed.tar.gz").read_bytes()
    assert b"red.png" not in sealed_bytes and not sealed_bytes.startswith(b"\x1f\x8b")
    with open_sealed((tmp_path / "sealed.tar.gz").open("rb"), cipher, context="jobs/j1/result") as handle:
        assert handle.read() == (tmp_path / "clear.tar.gz").read_bytes()


def test_rotation_reseals_uploads_clear_ones_too_and_keeps_their_bytes(tmp_path: Path) -> None:
    from faceprint.crypto import record_key_id, sealed_stream_key_id

    old, new = EncryptionKey.generate(), EncryptionKey.generate()
    photo, archive = make_face_png(RED), _dataset()
    old_store = UploadStore(tmp_path, cipher=RecordCipher(old))
    sealed = old_store.save(io.BytesIO(photo), filename="a.png", max_bytes=1 << 24)
    clear = UploadStore(tmp_path).save(io.BytesIO(archive), filename="b.tgz", max_bytes=1 << 24)
    keyring = UploadStore(tmp_path, cipher=RecordCipher(new, previous_keys=[old]))
    assert keyring.rotate_encryption() == (2, 0)
    assert keyring.rotate_encryption() == (0, 2)
    new_only = UploadStore(tmp_path, cipher=RecordCipher(new))
    assert new_only.read_bytes(sealed.id) == photo and new_only.read_bytes(clear.id) == archive
    assert new_only.get(sealed.id) == sealed and new_only.get(clear.id) == clear
    for upload_id in (sealed.id, clear.id):
        assert sealed_stream_key_id((tmp_path / upload_id / "data").read_bytes()) == new.key_id
        assert record_key_id((tmp_path / upload_id / "meta.json").read_bytes()) == new.key_id
    assert b"\x89PNG" not in _raw_bytes(tmp_path) and b"b.tgz" not in _raw_bytes(tmp_path)
    with pytest.raises(EncryptionKeyMismatchError):
        UploadStore(tmp_path, cipher=RecordCipher(old)).read_bytes(sealed.id)
    with pytest.raises(EncryptionKeyRequiredError):
        UploadStore(tmp_path).rotate_encryption()


def test_rotation_without_the_old_key_changes_nothing(tmp_path: Path) -> None:
    old = EncryptionKey.generate()
    store = UploadStore(tmp_path, cipher=RecordCipher(old))
    record = store.save(io.BytesIO(make_face_png(RED)), filename="a.png", max_bytes=1 << 24)
    before = _raw_bytes(tmp_path)
    with pytest.raises(EncryptionKeyMismatchError):
        UploadStore(tmp_path, cipher=RecordCipher(EncryptionKey.generate())).rotate_encryption()
    assert _raw_bytes(tmp_path) == before  # the failed re-encryption left no partial file
    assert store.read_bytes(record.id) == make_face_png(RED)
    assert sorted(p.name for p in (tmp_path / record.id).iterdir()) == ["data", "meta.json"]
