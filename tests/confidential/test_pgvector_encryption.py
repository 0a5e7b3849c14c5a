"""Gallery templates encrypted at rest in PostgreSQL: the same answers as clear galleries (searched in process,
since pgvector cannot search ciphertext), no clear vector or source in the database, clear key errors, and a
rotation that survives a crash."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from faceprint.audit import audit_database
from faceprint.cli.common import CliContext
from faceprint.cli.main import app
from faceprint.crypto import (
    EncryptedRecordCorruptError,
    EncryptionKey,
    EncryptionKeyMismatchError,
    EncryptionKeyRequiredError,
    RecordCipher,
    record_key_id,
)
from faceprint.errors import UsageError
from faceprint.gallery.base import GalleryNotFoundError
from faceprint.gallery.pgvector import PgvectorGallery
from faceprint.gallery.search import MultiGalleryIndex
from faceprint.gallery.sqlite import SqliteGallery
from faceprint.settings import Settings

from .gallery_data import answers, faceprints, fill


@pytest.fixture
def make(postgres_url: str) -> Iterator[tuple[str, list[str]]]:
    """The database URL, and a list of gallery names to drop afterwards."""
    names: list[str] = []
    yield postgres_url, names
    for name in names:
        with contextlib.suppress(GalleryNotFoundError):  # a test that dropped it itself
            PgvectorGallery.open(postgres_url, name).drop()


def _new(make: tuple[str, list[str]], cipher: RecordCipher | None) -> PgvectorGallery:
    url, names = make
    names.append("enc_" + uuid.uuid4().hex[:10])
    return PgvectorGallery.create(url, names[-1], cipher=cipher)


def _raw(gallery: PgvectorGallery) -> list[tuple[object, bytes | None, str | None]]:
    from faceprint.postgres import connect

    with connect(gallery.engine_key) as conn:  # the URL it was opened on
        return list(
            conn.execute(
                f"SELECT embedding, sealed_vector, source FROM {gallery.schema}.templates ORDER BY template_id"
            ).fetchall()
        )


def test_same_answers_as_clear_galleries_and_nothing_clear_in_the_database(
    make: tuple[str, list[str]], tmp_path: Path
) -> None:
    cipher = RecordCipher(EncryptionKey.generate())
    with (
        _new(make, None) as clear,
        _new(make, cipher) as sealed,
        SqliteGallery.create(tmp_path / "s.sqlite", cipher=cipher) as local,
    ):
        fill(clear)
        enrolled = fill(sealed)
        fill(local)
        probes = [*faceprints(5, seed=9), enrolled[4]]
        assert clear.searches_in_database and not sealed.searches_in_database
        assert answers(sealed, probes) == answers(clear, probes) == answers(local, probes)
        assert answers(sealed, probes)[-1][0][0] == "Person 1"
        assert [t.source for t in sealed.templates()] == [t.source for t in clear.templates()]
        for a, b in zip(clear.templates(), sealed.templates(), strict=True):
            np.testing.assert_array_equal(a.faceprint.vector, b.faceprint.vector)
        # An encrypted and a clear gallery of one database searched together (one in process, one in SQL).
        together = MultiGalleryIndex([clear, sealed]).search(probes, top_k=2, min_similarity=-1.0)
        assert {m.gallery for r in together for m in r.matches} == {clear.name, sealed.name}
        with pytest.raises(UsageError, match="searched in process"):
            clear.nearest_persons(np.stack([p.vector for p in probes]), top_k=1, together=[sealed])

        rows = _raw(sealed)
        assert all(embedding is None for embedding, _, _ in rows)
        assert {record_key_id(bytes(blob)) for _, blob, _ in rows} == {cipher.key_id}
        assert all(str(source).startswith("fpe1:") and "person" not in str(source) for _, _, source in rows)
        report = audit_database(make[0])
        assert not [f for f in report.findings if f.where is not None and f.where.startswith(sealed.schema)]
        # The clear gallery of the same database is found: the audit sees what encryption hides.
        assert [f for f in report.findings if f.where is not None and f.where.startswith(clear.schema)]


def test_key_errors_and_a_moved_record(make: tuple[str, list[str]]) -> None:
    cipher = RecordCipher(EncryptionKey.generate())
    with _new(make, cipher) as gallery:
        fill(gallery, people=2, per_person=1)
        url, name = make[0], gallery.name
    with PgvectorGallery.open(url, name) as keyless:
        assert [p.name for p in keyless.persons()] == ["Person 0", "Person 1"]  # names stay clear
        assert not keyless.searches_in_database
        with pytest.raises(EncryptionKeyRequiredError):
            keyless.snapshot()
        with pytest.raises(EncryptionKeyRequiredError):
            keyless.search(faceprints(1, seed=2), top_k=1)
        with pytest.raises(EncryptionKeyRequiredError):  # never a clear write into an encrypted gallery
            keyless.enroll("p00", faceprints(1, seed=3))
    with PgvectorGallery.open(url, name, cipher=RecordCipher(EncryptionKey.generate())) as wrong:
        with pytest.raises(EncryptionKeyMismatchError):
            wrong.templates()
    from faceprint.postgres import connect

    with PgvectorGallery.open(url, name, cipher=cipher) as gallery, connect(url) as conn:
        s = gallery.schema
        conn.execute(
            f"UPDATE {s}.templates SET sealed_vector = (SELECT sealed_vector FROM {s}.templates "
            f"WHERE person_id = 'p00') WHERE person_id = 'p01'"
        )
        conn.commit()
        with pytest.raises(EncryptedRecordCorruptError):
            gallery.snapshot()


def test_export_import_through_encryption(make: tuple[str, list[str]], tmp_path: Path) -> None:
    cipher = RecordCipher(EncryptionKey.generate())
    with _new(make, cipher) as source, _new(make, cipher) as target:
        fill(source)
        source.export_jsonl(tmp_path / "a.jsonl")
        first = target.import_jsonl(tmp_path / "a.jsonl")
        again = target.import_jsonl(tmp_path / "a.jsonl")  # dedupe compares clear vectors
        assert (first.templates_added, again.templates_added, again.templates_skipped) == (18, 0, 18)
        assert all(embedding is None for embedding, _, _ in _raw(target))


class _Crash(Exception):
    pass


def _crash(rotated: int) -> None:
    raise _Crash(f"simulated crash after {rotated} templates")


@pytest.mark.parametrize("start", ["clear", "old-key"])
def test_rotation_is_recoverable_after_a_crash(make: tuple[str, list[str]], start: str, tmp_path: Path) -> None:
    old, new = EncryptionKey.generate(), EncryptionKey.generate()
    with _new(make, None if start == "clear" else RecordCipher(old)) as gallery:
        fill(gallery, people=5, per_person=4)
        url, name = make[0], gallery.name
    probes = faceprints(4, seed=5)
    rotating = RecordCipher(new, previous_keys=[old])
    with PgvectorGallery.open(url, name, cipher=rotating) as gallery:
        before = answers(gallery, probes)
        with pytest.raises(_Crash):
            gallery.rotate_encryption(batch_size=7, after_batch=_crash)
        ids = [None if blob is None else record_key_id(bytes(blob)) for _, blob, _ in _raw(gallery)]
        assert ids[:7] == [new.key_id] * 7 and ids[7:] == [None if start == "clear" else old.key_id] * 13
        assert answers(gallery, probes) == before  # half-rotated: whole and readable
    # The rest through the CLI, the gallery named by its URL.
    key_file = tmp_path / "old.key"
    old.write_file(key_file)
    ref = f"{url}{'&' if '?' in url else '?'}gallery={name}"
    result = CliRunner().invoke(
        app,
        ["keys", "rotate-encryption", ref, "--old-key-file", str(key_file)],
        obj=CliContext(Settings(encryption_key=new.to_base64())),
    )
    assert result.exit_code == 0, result.output
    assert "13 templates re-encrypted, 7 already" in result.output
    with PgvectorGallery.open(url, name, cipher=RecordCipher(new)) as gallery:
        assert answers(gallery, probes) == before
        assert gallery.rotate_encryption().templates_rotated == 0
        assert all(embedding is None for embedding, _, _ in _raw(gallery))
        assert {t.source for t in gallery.templates()} >= {"person0_0.jpg", "person4_3.jpg"}


def test_migration_of_an_encrypted_gallery_stays_encrypted_both_ways(
    make: tuple[str, list[str]], tmp_path: Path
) -> None:
    from faceprint.gallery.migrate import migrate_gallery

    key = EncryptionKey.generate()
    cipher = RecordCipher(key)
    with SqliteGallery.create(tmp_path / "staff.sqlite", cipher=cipher) as local:
        fill(local)
        probes = faceprints(3, seed=4)
        before = answers(local, probes)
    url, names = make
    names.append("mig_" + uuid.uuid4().hex[:10])
    ref = f"{url}{'&' if '?' in url else '?'}gallery={names[-1]}"
    with pytest.raises(EncryptionKeyRequiredError):  # the source cannot be read without the key
        migrate_gallery(tmp_path / "staff.sqlite", ref)
    summary = migrate_gallery(tmp_path / "staff.sqlite", ref, cipher=cipher)
    assert summary.templates == 18
    with PgvectorGallery.open(url, names[-1], cipher=cipher) as copy:
        assert answers(copy, probes) == before
        assert all(embedding is None for embedding, _, _ in _raw(copy))
    # Back to SQLite through the CLI, the key from the settings.
    result = CliRunner().invoke(
        app,
        ["gallery", "migrate", ref, str(tmp_path / "back.sqlite")],
        obj=CliContext(Settings(encryption_key=key.to_base64())),
    )
    assert result.exit_code == 0, result.output
    with SqliteGallery.open(tmp_path / "back.sqlite", cipher=cipher) as back:
        assert answers(back, probes) == before
    raw = (tmp_path / "back.sqlite").read_bytes()
    assert b"person0_0.jpg" not in raw
    assert not list(tmp_path.glob("*.jsonl"))
