"""The hostile corpus for the library readers: images, faceprint files, galleries, output paths.

Each case builds one hostile input in a fresh workspace, calls the library the way every entry point does,
and asserts: a :class:`~faceprint.errors.FaceprintError` with the expected stable code (never another
exception, never a hang), and the workspace unchanged (nothing written, nothing destroyed).
"""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceprint.errors import FaceprintError
from faceprint.types import Faceprint

from .conftest import assert_only_outputs_changed, snapshot

Operation = Callable[[Path], object]


def _png(size_wh: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size_wh, (120, 120, 120)).save(buffer, "PNG")
    return buffer.getvalue()


def _encoded(fmt: str, size_wh: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size_wh).save(buffer, fmt)
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def image_file(data: bytes) -> Operation:
    def run(ws: Path) -> object:
        from faceprint.io.image import load_image

        (ws / "probe.img").write_bytes(data)
        return load_image(ws / "probe.img")

    return run


def image_path(make: Callable[[Path], Path]) -> Operation:
    def run(ws: Path) -> object:
        from faceprint.io.image import load_image

        return load_image(make(ws))

    return run


def _fifo(ws: Path) -> Path:
    os.mkfifo(ws / "pipe.jpg")
    return ws / "pipe.jpg"


def _faceprint(dim: int = 8) -> Faceprint:
    return Faceprint(np.ones(dim, np.float32), model_id="m", contract_id="m:1", package_version="0")


def faceprint_file(data: bytes) -> Operation:
    def run(ws: Path) -> object:
        from faceprint.io.faceprints import read_faceprint_file

        (ws / "probe.json").write_bytes(data)
        return read_faceprint_file(ws / "probe.json")

    return run


def faceprint_path(make: Callable[[Path], Path]) -> Operation:
    def run(ws: Path) -> object:
        from faceprint.io.faceprints import read_faceprint_file

        return read_faceprint_file(make(ws))

    return run


def compare_dims(ws: Path) -> object:
    from faceprint.io.faceprints import check_comparable

    (ws / "a.json").write_text(_faceprint(64).to_json())
    (ws / "b.json").write_text(_faceprint(128).to_json())
    from faceprint.io.faceprints import read_faceprint_file

    check_comparable(read_faceprint_file(ws / "a.json")[0], read_faceprint_file(ws / "b.json")[0])
    return None


def _gallery(ws: Path, *, templates: int = 2) -> Path:
    from faceprint.gallery.sqlite import SqliteGallery

    path = ws / "g.sqlite"
    with SqliteGallery.create(path) as gallery:
        for index in range(templates):
            faceprint = Faceprint(
                np.random.default_rng(index).normal(size=8).astype(np.float32),
                model_id="m",
                contract_id="m:1",
                package_version="0",
            )
            gallery.enroll(gallery.add_person(f"P{index}").person_id, [faceprint])
    return path


def damaged_gallery(statement: str) -> Operation:
    """A gallery altered behind faceprint's back; searching it (the snapshot identify uses) must fail clearly."""

    def setup(ws: Path) -> None:
        conn = sqlite3.connect(_gallery(ws))
        conn.execute(statement)
        conn.commit()
        conn.close()

    def run(ws: Path) -> object:
        from faceprint.gallery.sqlite import SqliteGallery

        with SqliteGallery.open(ws / "g.sqlite") as gallery:
            return gallery.snapshot()

    run.setup = setup  # type: ignore[attr-defined]
    return run


def gallery_file(data: bytes) -> Operation:
    def run(ws: Path) -> object:
        from faceprint.gallery.sqlite import SqliteGallery

        (ws / "g.sqlite").write_bytes(data)
        with SqliteGallery.open(ws / "g.sqlite") as gallery:
            return gallery.persons()

    return run


def gallery_import(change: Callable[[list[dict[str, object]]], None]) -> Operation:
    def setup(ws: Path) -> None:
        from faceprint.gallery.sqlite import SqliteGallery

        (ws / "src").mkdir()
        with SqliteGallery.open(_gallery(ws / "src")) as source:
            source.export_jsonl(ws / "export.jsonl")
        lines = [json.loads(line) for line in (ws / "export.jsonl").read_text().splitlines()]
        change(lines)
        (ws / "export.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        SqliteGallery.create(ws / "target.sqlite").close()

    def run(ws: Path) -> object:
        from faceprint.gallery.sqlite import SqliteGallery

        with SqliteGallery.open(ws / "target.sqlite") as target:
            return target.import_jsonl(ws / "export.jsonl")

    run.setup = setup  # type: ignore[attr-defined]
    return run


def _set_template(key: str, value: object) -> Callable[[list[dict[str, object]]], None]:
    def change(lines: list[dict[str, object]]) -> None:
        templates = lines[1]["templates"]
        assert isinstance(templates, list)
        templates[0][key] = value

    return change


def _set_header(key: str, value: object) -> Callable[[list[dict[str, object]]], None]:
    def change(lines: list[dict[str, object]]) -> None:
        lines[0][key] = value

    return change


def output_path(make: Callable[[Path], tuple[Path, list[Path]]], kind: str = "file") -> Operation:
    def run(ws: Path) -> object:
        from faceprint.io.output import check_output_path

        target, inputs = make(ws)
        return check_output_path(target, inputs=inputs, kind=kind)  # type: ignore[arg-type]

    return run


def _input_file(ws: Path) -> tuple[Path, list[Path]]:
    (ws / "in.tgz").write_bytes(b"data")
    return ws / "in.tgz", [ws / "in.tgz"]


def _hard_link(ws: Path) -> tuple[Path, list[Path]]:
    (ws / "in.tgz").write_bytes(b"data")
    os.link(ws / "in.tgz", ws / "alias.tgz")
    return ws / "alias.tgz", [ws / "in.tgz"]


def _inside_input(ws: Path) -> tuple[Path, list[Path]]:
    (ws / "dataset").mkdir()
    return ws / "dataset" / "results", [ws / "dataset"]


def _file_as_dir(ws: Path) -> tuple[Path, list[Path]]:
    (ws / "file").write_text("x")
    return ws / "file", []


def _socket(ws: Path) -> tuple[Path, list[Path]]:
    import socket

    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(ws / "sock"))
    sock.close()
    return ws / "sock", []


def archive_path(make: Callable[[Path], Path]) -> Operation:
    def run(ws: Path) -> object:
        from faceprint.io.archive import Dataset

        with Dataset(make(ws)) as dataset:
            return dataset.names

    return run


def _tgz_claiming_dev(ws: Path) -> Path:
    return Path("/dev/zero")


CASES: dict[str, tuple[Operation, str]] = {
    # images (issue 15 #14 and beyond)
    "image-1x1": (image_file(_png((1, 1))), "image_too_small"),
    "image-1x20000": (image_file(_png((1, 20_000))), "image_too_small"),
    "image-20000x1": (image_file(_png((20_000, 1))), "image_too_small"),
    "image-15x300": (image_file(_png((15, 300))), "image_too_small"),
    "image-empty": (image_file(b""), "decode_error"),
    "image-text": (image_file(b"hello, not an image\n" * 10), "decode_error"),
    "image-truncated": (image_file(_png((64, 64))[:80]), "decode_error"),
    "image-gif": (image_file(_encoded("GIF")), "unsupported_format"),
    "image-tiff": (image_file(_encoded("TIFF")), "unsupported_format"),
    "image-claims-900-megapixels": (image_file(_png_claiming(30_000, 30_000)), "image_too_large"),
    "image-side-above-limit": (image_file(_png_claiming(40_000, 20)), "image_too_large"),
    "image-fifo": (image_path(_fifo), "not_regular_file"),
    "image-dev-zero": (image_path(lambda ws: Path("/dev/zero")), "not_regular_file"),
    "image-folder": (image_path(lambda ws: ws), "decode_error"),
    "image-missing": (image_path(lambda ws: ws / "nope.jpg"), "missing_file"),
    # faceprint files (issue 15 #15)
    "faceprint-empty": (faceprint_file(b""), "faceprint_format"),
    "faceprint-blank-lines": (faceprint_file(b"\n\n\n"), "faceprint_format"),
    "faceprint-not-json": (faceprint_file(b"not json at all"), "faceprint_format"),
    "faceprint-json-list": (faceprint_file(b"[0.1, 0.2]"), "faceprint_format"),
    "faceprint-json-string": (faceprint_file(b'"faceprint"'), "faceprint_format"),
    "faceprint-latin-1": (faceprint_file('{"model_id": "caf\u00e9"}'.encode("latin-1")), "faceprint_format"),
    "faceprint-nan": (faceprint_file(_faceprint().to_json().replace("1.0", "NaN", 1).encode()), "faceprint_format"),
    "faceprint-fifo": (faceprint_path(_fifo), "not_regular_file"),
    "faceprint-64d-vs-128d": (compare_dims, "contract_mismatch"),
    # galleries (issue 15 #18, #19, #21, #23 and beyond)
    "gallery-short-blob": (
        damaged_gallery("UPDATE templates SET vector = X'00' WHERE template_id = 1"),
        "gallery_corrupt",
    ),
    "gallery-dim-text": (damaged_gallery("UPDATE meta SET value = 'x' WHERE key = 'dim'"), "gallery_corrupt"),
    "gallery-row-dim": (damaged_gallery("UPDATE templates SET dim = 3"), "gallery_corrupt"),
    "gallery-0-bytes": (gallery_file(b""), "gallery_format"),
    "gallery-random-bytes": (gallery_file(os.urandom(4096)), "gallery_format"),
    "gallery-text-file": (gallery_file(b"name,person\n" * 100), "gallery_format"),
    "import-source-object": (gallery_import(_set_template("source", {"x": 1})), "gallery_format"),
    "import-created-at-list": (gallery_import(_set_template("created_at", [2024])), "gallery_format"),
    "import-contract-null": (gallery_import(_set_header("contract_id", None)), "gallery_format"),
    "import-faceprint-not-object": (gallery_import(_set_template("faceprint", "x")), "gallery_format"),
    # output paths (issue 15 #1, #2, #13, #16)
    "output-is-input": (output_path(_input_file), "output_is_input"),
    "output-hard-link-to-input": (output_path(_hard_link), "output_is_input"),
    "output-dev-null": (output_path(lambda ws: (Path("/dev/null"), [])), "output_not_regular"),
    "output-socket": (output_path(_socket), "output_not_regular"),
    "output-folder": (output_path(lambda ws: (ws, [])), "output_is_directory"),
    "output-dir-is-a-file": (output_path(_file_as_dir, "dir"), "output_not_directory"),
    "output-dir-inside-input": (output_path(_inside_input, "dir"), "output_is_input"),
    "output-parent-missing": (output_path(lambda ws: (ws / "a" / "b.json", [])), "output_parent_missing"),
    # dataset paths (issue 15 #6)
    "dataset-fifo": (archive_path(_fifo), "not_regular_file"),
    "dataset-dev-zero": (archive_path(_tgz_claiming_dev), "not_regular_file"),
}

# Entries the case itself creates, and may therefore leave behind.
_CREATED_BY_RUN = ("probe.img", "probe.json", "a.json", "b.json", "pipe.jpg", "g.sqlite", "in.tgz", "alias.tgz",
                   "dataset", "file", "sock")


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_library_hostile_case(case_id: str, tmp_path: Path) -> None:
    operation, code = CASES[case_id]
    ws = tmp_path / "ws"
    ws.mkdir()
    setup = getattr(operation, "setup", None)
    if setup is not None:
        setup(ws)
    before = snapshot(ws)
    signal.alarm(30)  # a FIFO opened by mistake blocks forever: fail the case instead
    try:
        with pytest.raises(FaceprintError) as caught:
            operation(ws)
    finally:
        signal.alarm(0)
    assert caught.value.code == code, caught.value.message
    assert caught.value.message  # a message for people, not just a code
    after = snapshot(ws)
    if setup is not None:
        # The damaged input is left exactly as it was (SQLite may add its -wal/-shm beside a gallery).
        assert {k: v for k, v in after.items() if k in before} == before
    else:
        assert_only_outputs_changed(before, after, _CREATED_BY_RUN)
    assert Path("/dev/null").is_char_device()
