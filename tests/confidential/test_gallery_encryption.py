"""Gallery templates encrypted at rest in SQLite: same answers, no clear vector in the file, clear key errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from faceprint.crypto import (
    EncryptedRecordCorruptError,
    EncryptionKey,
    EncryptionKeyMismatchError,
    EncryptionKeyRequiredError,
    RecordCipher,
    record_key_id,
)
from faceprint.gallery.sqlite import SqliteGallery

from .gallery_data import DIM, answers, faceprints, fill


def _file_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


@pytest.fixture
def cipher() -> RecordCipher:
    return RecordCipher(EncryptionKey.generate())


def test_same_answers_with_encryption_on_and_off(tmp_path: Path, cipher: RecordCipher) -> None:
    with (
        SqliteGallery.create(tmp_path / "clear.sqlite") as clear,
        SqliteGallery.create(tmp_path / "sealed.sqlite", cipher=cipher) as sealed,
    ):
        fill(clear)
        enrolled = fill(sealed)
        probes = [*faceprints(5, seed=9), enrolled[4]]
        assert answers(sealed, probes) == answers(clear, probes)
        assert answers(sealed, probes)[-1][0][0] == "Person 1"
        clear_templates = clear.templates()
        sealed_templates = sealed.templates()
        assert [t.source for t in sealed_templates] == [t.source for t in clear_templates]
        for a, b in zip(clear_templates, sealed_templates, strict=True):
            np.testing.assert_array_equal(a.faceprint.vector, b.faceprint.vector)
    # Reopened by another handle with the key: the same again.
    with SqliteGallery.open(tmp_path / "sealed.sqlite", cipher=cipher) as again:
        assert answers(again, probes) == answers(SqliteGallery.open(tmp_path / "clear.sqlite"), probes)


def test_no_clear_vector_or_source_in_the_file(tmp_path: Path, cipher: RecordCipher) -> None:
    path = tmp_path / "sealed.sqlite"
    with SqliteGallery.create(path, cipher=cipher) as gallery:
        enrolled = fill(gallery)
    raw = _file_bytes(path)
    for fp in enrolled:
        assert fp.vector.astype("<f4").tobytes()[:32] not in raw
    assert b"person0_0.jpg" not in raw
    with sqlite3.connect(path) as conn:
        blobs = [row[0] for row in conn.execute("SELECT vector FROM templates")]
    assert all(record_key_id(blob) == cipher.key_id for blob in blobs)


def test_key_errors(tmp_path: Path, cipher: RecordCipher) -> None:
    path = tmp_path / "sealed.sqlite"
    with SqliteGallery.create(path, cipher=cipher) as gallery:
        fill(gallery, people=1)
    with SqliteGallery.open(path) as keyless:
        assert [p.name for p in keyless.persons()] == ["Person 0"]  # names stay searchable
        with pytest.raises(EncryptionKeyRequiredError):
            keyless.snapshot()
        with pytest.raises(EncryptionKeyRequiredError):
            keyless.templates()
        person = keyless.persons()[0]
        with pytest.raises(EncryptionKeyRequiredError):  # never a clear write into an encrypted gallery
            keyless.enroll(person.person_id, faceprints(1, seed=3))
    with SqliteGallery.open(path, cipher=RecordCipher(EncryptionKey.generate())) as wrong:
        with pytest.raises(EncryptionKeyMismatchError) as info:
            wrong.snapshot()
        assert info.value.code == "encryption_key_mismatch"


def test_a_blob_moved_to_another_row_is_refused(tmp_path: Path, cipher: RecordCipher) -> None:
    path = tmp_path / "sealed.sqlite"
    with SqliteGallery.create(path, cipher=cipher) as gallery:
        fill(gallery, people=2, per_person=1)
    with sqlite3.connect(path) as conn:
        (first, second) = [row[0] for row in conn.execute("SELECT template_id FROM templates ORDER BY 1")]
        conn.execute(
            "UPDATE templates SET vector = (SELECT vector FROM templates WHERE template_id = ?) WHERE template_id = ?",
            (first, second),
        )
    with SqliteGallery.open(path, cipher=cipher) as gallery, pytest.raises(EncryptedRecordCorruptError):
        gallery.snapshot()


def test_export_import_through_encryption(tmp_path: Path, cipher: RecordCipher) -> None:
    with SqliteGallery.create(tmp_path / "a.sqlite", cipher=cipher) as source:
        fill(source)
        source.export_jsonl(tmp_path / "a.jsonl")
    with SqliteGallery.create(tmp_path / "b.sqlite", cipher=cipher) as target:
        first = target.import_jsonl(tmp_path / "a.jsonl")
        again = target.import_jsonl(tmp_path / "a.jsonl")  # dedupe compares clear vectors
        assert (first.templates_added, again.templates_added, again.templates_skipped) == (18, 0, 18)


class _Crash(Exception):
    pass


def _crash_after_first_batch(rotated: int) -> None:
    raise _Crash(f"simulated crash after {rotated} templates")


@pytest.mark.parametrize("start", ["clear", "old-key"])
def test_rotation_is_recoverable_after_a_crash(tmp_path: Path, start: str) -> None:
    old, new = EncryptionKey.generate(), EncryptionKey.generate()
    path = tmp_path / "g.sqlite"
    with SqliteGallery.create(path, cipher=None if start == "clear" else RecordCipher(old)) as gallery:
        fill(gallery, people=5, per_person=4)
        probes = faceprints(4, seed=5)
        before = answers(gallery, probes) if start == "clear" else None
    rotating = RecordCipher(new, previous_keys=[old])
    with SqliteGallery.open(path, cipher=rotating) as gallery:
        if before is None:
            before = answers(gallery, probes)
        with pytest.raises(_Crash):
            gallery.rotate_encryption(batch_size=7, after_batch=_crash_after_first_batch)
        with sqlite3.connect(path) as conn:
            key_ids = [
                record_key_id(row[0]) for row in conn.execute("SELECT vector FROM templates ORDER BY template_id")
            ]
        assert key_ids[:7] == [new.key_id] * 7
        assert key_ids[7:] == [None if start == "clear" else old.key_id] * 13
        assert answers(gallery, probes) == before  # half-rotated: still whole and readable
        summary = gallery.rotate_encryption(batch_size=7)
        assert (summary.templates_rotated, summary.templates_current) == (13, 7)
    with SqliteGallery.open(path, cipher=RecordCipher(new)) as gallery:
        assert answers(gallery, probes) == before
        assert gallery.rotate_encryption().templates_rotated == 0
        assert {t.source for t in gallery.templates()} >= {"person0_0.jpg", "person4_3.jpg"}


def test_merge_and_split_keep_encrypted_templates_readable(tmp_path: Path, cipher: RecordCipher) -> None:
    """Records are bound to their template id, not their person: moving templates between persons is fine."""
    with SqliteGallery.create(tmp_path / "g.sqlite", cipher=cipher) as gallery:
        fill(gallery, people=3, per_person=2)
        before = {t.template_id: t.faceprint.vector.tobytes() for t in gallery.templates()}
        a, b, c = sorted(gallery.persons(), key=lambda p: p.name)
        gallery.merge_persons(a.person_id, [b.person_id])
        moved = [t.template_id for t in gallery.templates(a.person_id)][:3]
        gallery.split_person(a.person_id, moved, name="Split")
        gallery.remove_template(gallery.templates(c.person_id)[0].template_id)
        after = {t.template_id: t.faceprint.vector.tobytes() for t in gallery.templates()}
        assert len(after) == 5 and all(before[i] == v for i, v in after.items())
        assert gallery.snapshot().vectors.shape == (5, DIM)
