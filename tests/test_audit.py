"""faceprint.audit on synthetic data dirs: what must be found is, what must not be is not, nothing written."""

from __future__ import annotations

import gzip
import io
import json
import os
import sqlite3
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from faceprint.audit import audit_data_dir, scan_bytes
from faceprint.cli.common import CliContext
from faceprint.cli.main import app
from faceprint.crypto import EncryptionKey, RecordCipher
from faceprint.errors import MissingFileError
from faceprint.gallery.sqlite import SqliteGallery
from faceprint.settings import Settings
from faceprint.types import Faceprint


def _image_bytes(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, size=(24, 32, 3), dtype=np.uint8))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def _mp4_head(brand: bytes = b"isom") -> bytes:
    body = brand + b"\x00\x00\x02\x00" + b"isomiso2avc1mp41"
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body + struct.pack(">I", 8) + b"free"


def _webm_head() -> bytes:
    return b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82\x84webm\x42\x87\x81\x04"


def _avi_head() -> bytes:
    return b"RIFF" + struct.pack("<I", 4096) + b"AVI LIST" + bytes(32)


def _unit(dim: int, seed: int = 0, dtype: str = "<f4") -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=dim)
    return (vector / np.linalg.norm(vector)).astype(dtype)


def _faceprint(dim: int = 128, seed: int = 0) -> Faceprint:
    return Faceprint(_unit(dim, seed).astype(np.float32), model_id="m", contract_id="m:1", package_version="0")


# --- what must be found --------------------------------------------------------------------------------

PLANTED = [
    ("jpeg", lambda: _image_bytes("JPEG"), "image", "JPEG"),
    ("png", lambda: _image_bytes("PNG"), "image", "PNG"),
    ("gif", lambda: _image_bytes("GIF"), "image", "GIF"),
    ("webp", lambda: _image_bytes("WEBP"), "image", "WebP"),
    ("bmp", lambda: _image_bytes("BMP"), "image", "BMP"),
    ("tiff", lambda: _image_bytes("TIFF"), "image", "TIFF"),
    ("mp4", _mp4_head, "video", "MP4/MOV (isom)"),
    ("mov", lambda: _mp4_head(b"qt  "), "video", "MP4/MOV (qt)"),
    ("heic", lambda: _mp4_head(b"heic"), "image", "HEIF/AVIF (heic)"),
    ("webm", _webm_head, "video", "WebM"),
    ("avi", _avi_head, "video", "AVI"),
    ("float32-128", lambda: _unit(128).tobytes(), "vector", "float32 x 128"),
    ("float32-512", lambda: _unit(512).tobytes(), "vector", "float32 x 512"),
    ("float64-128", lambda: _unit(128, dtype="<f8").tobytes(), "vector", "float64 x 128"),
    ("faceprint-json", lambda: _faceprint().to_json().encode(), "vector", "faceprint JSON x 128"),
    ("int16-faceprint", lambda: _faceprint().to_int16(), "vector", "int16 faceprint"),
]


@pytest.mark.parametrize(("name", "make", "kind", "what"), PLANTED, ids=[p[0] for p in PLANTED])
@pytest.mark.parametrize("prefix", [0, 1, 3, 7], ids=lambda n: f"offset{n}")
def test_planted_content_is_found_at_any_offset(
    tmp_path: Path, name: str, make: object, kind: str, what: str, prefix: int
) -> None:
    payload = make()  # type: ignore[operator]
    # 0xFF padding: NaN as a float, so it cannot lengthen a run (random bytes would, one time in ten).
    (tmp_path / "blob.bin").write_bytes(b"\xff" * prefix + payload + b"\xff" * 64)
    report = audit_data_dir(tmp_path)
    assert not report.clean
    start = payload.index(b"[") if what.startswith("faceprint JSON") else 0  # the vector, not the whole JSON
    assert (kind, what, prefix + start) in {(f.kind, f.what, f.offset) for f in report.findings}


def test_a_float_vector_in_a_sqlite_blob_is_located(tmp_path: Path) -> None:
    path = tmp_path / "app.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE things (id INTEGER PRIMARY KEY, label TEXT, payload BLOB)")
        conn.execute("INSERT INTO things VALUES (1, 'a', ?)", (b"\x00\x01",))
        conn.execute("INSERT INTO things VALUES (7, 'b', ?)", (b"xx" + _unit(128).tobytes(),))
    report = audit_data_dir(tmp_path)
    located = [(f.kind, f.what, f.where, f.offset) for f in report.findings if f.where is not None]
    assert located == [("vector", "float32 x 128", "sqlite things.payload rowid=7", 2)]


def test_images_inside_compressed_archives(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = _image_bytes("JPEG")
        info = tarfile.TarInfo("photos/a.jpg")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (tmp_path / "result.tar.gz").write_bytes(gzip.compress(buffer.getvalue()))
    with zipfile.ZipFile(tmp_path / "faces.zip", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("p.png", _image_bytes("PNG"))
    found = {(f.path.name, f.what, f.where) for f in audit_data_dir(tmp_path).findings}
    assert ("result.tar.gz", "JPEG", "gzip stream") in found
    assert ("faces.zip", "PNG", "zip member p.png") in found


def test_leftover_uploads(tmp_path: Path) -> None:
    upload = tmp_path / "uploads" / ("a" * 32)
    upload.mkdir(parents=True)
    (upload / "data").write_bytes(b"not an image, still an upload")
    (tmp_path / "uploads" / ".upload.x.tmp").write_bytes(b"half")
    found = {(f.kind, f.what, f.path.name) for f in audit_data_dir(tmp_path).findings}
    assert found == {("upload", "upload still stored", "a" * 32), ("upload", "partial upload", ".upload.x.tmp")}


def test_a_clear_gallery_is_found_an_encrypted_one_is_clean(tmp_path: Path) -> None:
    clear_dir, sealed_dir = tmp_path / "clear", tmp_path / "sealed"
    cipher = RecordCipher(EncryptionKey.generate())
    for folder, gallery_cipher in ((clear_dir, None), (sealed_dir, cipher)):
        folder.mkdir()
        with SqliteGallery.create(folder / "g.sqlite", cipher=gallery_cipher) as gallery:
            for p in range(20):
                person = gallery.add_person(f"Person {p}")
                gallery.enroll(person.person_id, [_faceprint(128, seed=p * 10 + i) for i in range(5)])
            gallery.export_jsonl(folder / "export.jsonl")
        (folder / "export.jsonl").unlink()  # an export is clear by design: not part of the gallery at rest
    clear = audit_data_dir(clear_dir)
    assert {f.what for f in clear.findings} == {"float32 x 128"}
    assert len([f for f in clear.findings if f.where is not None]) == 100
    sealed = audit_data_dir(sealed_dir)
    assert sealed.clean, sealed.findings
    assert sealed.files_scanned >= 1


# --- what must not be found ----------------------------------------------------------------------------

NEGATIVES = [
    ("random-4MiB", lambda: os.urandom(4 << 20)),
    (
        "aes-gcm-records",
        lambda: b"".join(
            RecordCipher(EncryptionKey.generate()).encrypt(_unit(512).tobytes(), context=str(i)) for i in range(200)
        ),
    ),
    ("zeros", lambda: bytes(1 << 20)),
    ("ints-as-float32", lambda: np.arange(-500, 500, dtype="<f4").tobytes()),
    ("positive-histogram", lambda: np.random.default_rng(1).random(4096).astype("<f4").tobytes()),
    ("constant", lambda: np.full(4096, 0.25, dtype="<f4").tobytes()),
    ("int32-array", lambda: np.arange(100000, dtype="<i4").tobytes()),
    ("timestamps", lambda: (1.7e9 + np.arange(4096, dtype="<f8")).tobytes()),
    ("127-floats", lambda: b"\x00" * 5 + _unit(127).tobytes() + b"\x00" * 5),
    ("text", lambda: (" ".join(f"{x:.6f}" for x in _unit(512)) + "\n").encode() * 4),
    ("json-ints", lambda: json.dumps(list(range(-300, 300))).encode()),
    ("jpeg-magic-alone", lambda: os.urandom(100) + b"\xff\xd8\xff\xe0" + os.urandom(100)),
    ("png-magic-alone", lambda: b"\x89PNG\r\n\x1a\n" + bytes(64)),
    ("tiff-magic-alone", lambda: b"II*\x00" + struct.pack("<I", 8) + bytes(64)),
]


@pytest.mark.parametrize(("name", "make"), NEGATIVES, ids=[n[0] for n in NEGATIVES])
def test_false_positives(name: str, make: object) -> None:
    assert scan_bytes(make()) == []  # type: ignore[operator]


def test_the_audit_writes_nothing(tmp_path: Path) -> None:
    with SqliteGallery.create(tmp_path / "g.sqlite") as gallery:
        person = gallery.add_person("A")
        gallery.enroll(person.person_id, [_faceprint()])
    (tmp_path / "photo.jpg").write_bytes(_image_bytes("JPEG"))

    def snapshot() -> dict[str, tuple[int, int]]:
        return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(tmp_path.rglob("*"))}

    before = snapshot()
    assert not audit_data_dir(tmp_path).clean
    assert snapshot() == before


def test_cli_verdict_is_the_exit_code(tmp_path: Path) -> None:
    runner = CliRunner()
    (tmp_path / "ok.txt").write_text("fine")
    clean = runner.invoke(app, ["audit", str(tmp_path)], obj=CliContext(Settings()))
    assert clean.exit_code == 0, clean.output
    (tmp_path / "kept.jpg").write_bytes(_image_bytes("JPEG"))
    dirty = runner.invoke(app, ["audit", str(tmp_path), "--json"], obj=CliContext(Settings()))
    assert dirty.exit_code == 1
    report = json.loads(dirty.stdout)
    assert report["clean"] is False
    assert [(f["kind"], f["what"], Path(f["path"]).name) for f in report["findings"]] == [("image", "JPEG", "kept.jpg")]
    missing = runner.invoke(app, ["audit", str(tmp_path / "nope")], obj=CliContext(Settings()))
    assert missing.exit_code == MissingFileError.exit_code


def test_values_spread_over_sqlite_overflow_pages_are_found(tmp_path: Path) -> None:
    """A 512-number JSON vector (about 10 KB) spans overflow pages: only the per-cell read sees it whole."""
    path = tmp_path / "results.sqlite"
    text = json.dumps({"vector": [float(x) for x in _unit(512)]})
    assert len(text) > 8192
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE items (key TEXT PRIMARY KEY, data TEXT) WITHOUT ROWID")
        conn.execute("INSERT INTO items VALUES ('a', ?)", (text,))
    found = [(f.what, f.where) for f in audit_data_dir(tmp_path).findings]
    assert found == [("faceprint JSON x 512", "sqlite items.data rowid=None")]
