"""``faceprint keys new-encryption-key`` and ``keys rotate-encryption`` through typer's CliRunner."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from faceprint.cli.common import CliContext
from faceprint.cli.main import app
from faceprint.crypto import EncryptionKey, RecordCipher, record_key_id
from faceprint.gallery.sqlite import SqliteGallery
from faceprint.settings import Settings
from faceprint.types import Faceprint

runner = CliRunner()


def _key_ids(path: Path) -> set[str | None]:
    with sqlite3.connect(path) as conn:
        return {record_key_id(row[0]) for row in conn.execute("SELECT vector FROM templates")}


def test_new_key_then_rotate_a_clear_gallery_then_rotate_keys(tmp_path: Path) -> None:
    gallery_dir = tmp_path / "galleries"
    gallery_dir.mkdir()
    path = gallery_dir / "staff.sqlite"
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5, 128)).astype(np.float32)
    with SqliteGallery.create(path) as gallery:
        person = gallery.add_person("Jane Doe")
        gallery.enroll(
            person.person_id, [Faceprint(v, model_id="m", contract_id="m:1", package_version="0") for v in vectors]
        )
    first, second = tmp_path / "first.key", tmp_path / "second.key"
    for key_file in (first, second):
        result = runner.invoke(app, ["keys", "new-encryption-key", str(key_file)], obj=CliContext(Settings()))
        assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["keys", "new-encryption-key", str(first)], obj=CliContext(Settings())).exit_code == 2

    no_key = runner.invoke(
        app, ["keys", "rotate-encryption", "staff"], obj=CliContext(Settings(gallery_dir=gallery_dir))
    )
    assert no_key.exit_code == 2 and "encryption_key_required" in no_key.output

    settings = Settings(gallery_dir=gallery_dir, encryption_key_file=first)
    result = runner.invoke(app, ["keys", "rotate-encryption", "staff"], obj=CliContext(settings))
    assert result.exit_code == 0, result.output
    assert "5 templates re-encrypted" in result.output
    assert _key_ids(path) == {EncryptionKey.from_file(first).key_id}

    # Without the old key, the new one cannot read the templates: a clear error, nothing changed.
    settings = Settings(gallery_dir=gallery_dir, encryption_key_file=second)
    refused = runner.invoke(app, ["keys", "rotate-encryption", "staff"], obj=CliContext(settings))
    assert refused.exit_code == 2 and "encryption_key_mismatch" in refused.output
    assert _key_ids(path) == {EncryptionKey.from_file(first).key_id}

    result = runner.invoke(
        app, ["keys", "rotate-encryption", str(path), "--old-key-file", str(first)], obj=CliContext(settings)
    )
    assert result.exit_code == 0, result.output
    assert _key_ids(path) == {EncryptionKey.from_file(second).key_id}
    with SqliteGallery.open(path, cipher=RecordCipher(EncryptionKey.from_file(second))) as gallery:
        stored = np.stack([t.faceprint.vector for t in gallery.templates()])
    np.testing.assert_array_equal(stored, vectors)
