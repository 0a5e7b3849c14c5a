"""The hostile corpus for the one-shot commands: ``embed``, ``compare``, ``detect``, ``identify``, ``gallery``.

Through the real app (``faceprint.cli.main.app``) with the CLI's factory seam (``CliContext``) giving the
weight-free fake pipeline. Each case asserts the exit status and the code on the one error line, no
traceback, and (for output paths) that nothing was written and no input changed, found before any work.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from faceprint.testing import make_face_png
from faceprint.types import Faceprint

from .conftest import assert_only_outputs_changed, snapshot

RED, BLUE = (200, 30, 30), (30, 30, 200)


@pytest.fixture(autouse=True)
def gallery_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACEPRINT_GALLERY_DIR", str(tmp_path / "galleries"))


def invoke(args: list[str], *, columns: int = 80) -> tuple[int, str]:
    from faceprint.cli.common import CliContext
    from faceprint.cli.main import app
    from faceprint.settings import load_settings
    from faceprint.testing import fake_pipeline_factory

    context = CliContext(settings=load_settings(), pipeline_factory=fake_pipeline_factory)
    result = CliRunner().invoke(app, args, obj=context, env={"COLUMNS": str(columns)})
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


def _faceprint(dim: int | None = None, value: float = 1.0) -> Faceprint:
    # The fake pipeline's own contract (and size), so that compare and identify reach the file contents.
    from faceprint.testing import fake_embedding_spec

    spec = fake_embedding_spec()
    size = spec.embedding_dim if dim is None else dim
    assert size is not None
    vector = np.full(size, value, np.float32)
    return Faceprint(vector, model_id=spec.id, contract_id=spec.contract_id, package_version="0")


@dataclass(frozen=True)
class Case:
    build: Callable[[Path], list[str]]
    exit_code: int
    code: str
    outputs: tuple[str, ...] = ()
    patch: Callable[[pytest.MonkeyPatch], None] | None = None


def _photo(ws: Path, name: str = "a.png") -> Path:
    (ws / name).write_bytes(make_face_png(RED))
    return ws / name


def embed_to(target: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
    def build(ws: Path) -> list[str]:
        photo = _photo(ws)
        return ["embed", str(photo), "-o", str(target(ws)), "-q"]

    return build


def _existing_folder(ws: Path) -> Path:
    (ws / "out").mkdir()
    return ws / "out"


def _fifo(ws: Path) -> Path:
    os.mkfifo(ws / "out.jsonl")
    return ws / "out.jsonl"


def embed_onto_its_input(ws: Path) -> list[str]:
    photo = _photo(ws)
    return ["embed", str(photo), "-o", str(photo), "-q"]


def patch_read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("faceprint.io.output.tempfile.mkstemp", read_only)


def compare_files(content: bytes | str) -> Callable[[Path], list[str]]:
    def build(ws: Path) -> list[str]:
        (ws / "good.json").write_text(_faceprint().to_json())
        (ws / "bad.json").write_bytes(content.encode() if isinstance(content, str) else content)
        return ["compare", str(ws / "good.json"), str(ws / "bad.json")]

    return build


def compare_dims(ws: Path) -> list[str]:
    (ws / "a.json").write_text(_faceprint(64).to_json())
    (ws / "b.json").write_text(_faceprint(128).to_json())
    return ["compare", str(ws / "a.json"), str(ws / "b.json")]


def _gallery(ws: Path) -> Path:
    from faceprint.gallery.sqlite import SqliteGallery

    path = ws / "g.sqlite"
    with SqliteGallery.create(path) as gallery:
        gallery.enroll(gallery.add_person("Jane").person_id, [_faceprint()])
    return path


def identify_damaged(statement: str) -> Callable[[Path], list[str]]:
    def build(ws: Path) -> list[str]:
        path = _gallery(ws)
        conn = sqlite3.connect(path)
        conn.execute(statement)
        conn.commit()
        conn.close()
        return ["identify", str(_photo(ws)), "-g", str(path)]

    return build


def identify_empty_file(ws: Path) -> list[str]:
    (ws / "g.sqlite").write_bytes(b"")
    return ["identify", str(_photo(ws)), "-g", str(ws / "g.sqlite")]


def import_with(key: str, value: object) -> Callable[[Path], list[str]]:
    def build(ws: Path) -> list[str]:
        from faceprint.gallery.sqlite import SqliteGallery

        with SqliteGallery.open(_gallery(ws)) as gallery:
            gallery.export_jsonl(ws / "e.jsonl")
        lines = [json.loads(line) for line in (ws / "e.jsonl").read_text().splitlines()]
        if key == "contract_id":
            lines[0][key] = value
        else:
            lines[1]["templates"][0][key] = value
        (ws / "e.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        SqliteGallery.create(ws / "t.sqlite").close()
        return ["gallery", "import", str(ws / "t.sqlite"), str(ws / "e.jsonl")]

    return build


CASES: dict[str, Case] = {
    # issue 15 #16: embed -o problems found before any work
    "embed-o-existing-folder": Case(embed_to(_existing_folder), 2, "output_is_directory"),
    "embed-o-missing-parent": Case(embed_to(lambda ws: ws / "no" / "out.jsonl"), 2, "output_parent_missing"),
    "embed-o-dev-null": Case(embed_to(lambda ws: Path("/dev/null")), 2, "output_not_regular"),
    "embed-o-fifo": Case(embed_to(_fifo), 2, "output_not_regular"),
    "embed-o-its-input": Case(embed_onto_its_input, 2, "output_is_input"),
    "embed-o-read-only": Case(embed_to(lambda ws: ws / "out.jsonl"), 73, "read_only_output", patch=patch_read_only),
    # issue 15 #15: compare with malformed faceprint files
    "compare-empty": Case(compare_files(b""), 3, "faceprint_format"),
    "compare-blank-lines": Case(compare_files("\n\n\n"), 3, "faceprint_format"),
    "compare-not-json": Case(compare_files("hello"), 3, "faceprint_format"),
    "compare-json-list": Case(compare_files("[1, 2, 3]"), 3, "faceprint_format"),
    "compare-json-string": Case(compare_files('"x"'), 3, "faceprint_format"),
    "compare-latin-1": Case(compare_files("caf\xe9".encode("latin-1")), 3, "faceprint_format"),
    "compare-64d-vs-128d": Case(compare_dims, 2, "contract_mismatch"),
    # issue 15 #18, #21: identify on a damaged or empty gallery
    "identify-short-blob": Case(
        identify_damaged("UPDATE templates SET vector = X'00'"), 3, "gallery_corrupt", outputs=("g.sqlite-",)
    ),
    "identify-bad-dim": Case(
        identify_damaged("UPDATE meta SET value = 'x' WHERE key = 'dim'"),
        3,
        "gallery_corrupt",
        outputs=("g.sqlite-",),
    ),
    "identify-0-byte-gallery": Case(identify_empty_file, 3, "gallery_format"),
    # issue 15 #19, #23: gallery import validation, rolled back
    "import-source-object": Case(import_with("source", {"x": 1}), 3, "gallery_format", outputs=("t.sqlite",)),
    "import-created-at-list": Case(import_with("created_at", [1]), 3, "gallery_format", outputs=("t.sqlite",)),
    "import-contract-null": Case(import_with("contract_id", None), 3, "gallery_format", outputs=("t.sqlite",)),
}


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_oneshot_hostile_case(case_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[case_id]
    ws = tmp_path / "ws"
    ws.mkdir()
    args = case.build(ws)
    if case.patch is not None:
        case.patch(monkeypatch)
    before = snapshot(ws)
    exit_code, output = invoke(args)
    assert exit_code == case.exit_code, output
    assert f"[{case.code}]" in output, output
    after = snapshot(ws)
    # SQLite may add -wal/-shm beside a gallery it opened; everything that was there is unchanged.
    outputs = tuple(name for name in after if any(name.startswith(prefix) for prefix in case.outputs))
    assert_only_outputs_changed(before, after, outputs)
    assert Path("/dev/null").is_char_device()


def test_import_that_fails_leaves_the_gallery_as_it_was(tmp_path: Path) -> None:
    from faceprint.gallery.sqlite import SqliteGallery

    args = import_with("source", {"x": 1})(tmp_path)
    exit_code, _ = invoke(args)
    assert exit_code == 3
    with SqliteGallery.open(tmp_path / "t.sqlite") as target:
        assert target.persons() == [] and target.contract_id is None


def test_embed_writes_the_good_photos_and_codes_the_tiny_one(tmp_path: Path) -> None:
    # issue 15 #14: a 1x20000 image was a traceback and embed wrote nothing for the good images
    good = _photo(tmp_path, "good.png")
    (tmp_path / "sliver.png").write_bytes(make_face_png(BLUE, size_wh=(1, 2000)))
    args = ["embed", str(good), str(tmp_path / "sliver.png"), "-o", str(tmp_path / "o.jsonl"), "-q"]
    exit_code, output = invoke(args)
    assert exit_code == 1, output
    records = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert any("faceprint" in r for r in records)
    assert [r["error"]["code"] for r in records if "error" in r] == ["image_too_small"]


@pytest.mark.parametrize("name", ["[/]x.png", "[bold red]X[bold red].png", "[link=https:]x[/link].png"])
def test_detect_prints_markup_in_paths_verbatim(tmp_path: Path, name: str) -> None:
    # issue 15 #17: "[/]" crashed Rich, and "[bold red]X[bold red]" vanished from the table
    photo = tmp_path / name  # "[/]x.png" is the file "]x.png" in a folder named "["
    photo.parent.mkdir(parents=True, exist_ok=True)
    photo.write_bytes(make_face_png(RED))
    exit_code, output = invoke(["detect", str(photo)], columns=400)
    assert exit_code == 0, output
    assert str(photo) in output, output


def test_identify_searches_a_gallery_on_a_read_only_file_system(read_only_dir: Path, tmp_path: Path) -> None:
    # issue 15 #22: "not a faceprint gallery: attempt to write a readonly database"
    import subprocess

    subprocess.run(["mount", "-o", "remount,rw", str(read_only_dir)], check=True)
    gallery = _gallery(read_only_dir)
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_dir)], check=True)
    photo = _photo(tmp_path)
    before = snapshot(read_only_dir)
    exit_code, output = invoke(["identify", str(photo), "-g", str(gallery), "--json"])
    assert exit_code == 0, output
    assert "Jane" in output
    assert snapshot(read_only_dir) == before


def _sliver(ws: Path) -> Path:
    (ws / "sliver.png").write_bytes(make_face_png(RED, size_wh=(1, 20_000)))
    return ws / "sliver.png"


def _fifo_photo(ws: Path) -> Path:
    os.mkfifo(ws / "pipe.jpg")
    return ws / "pipe.jpg"


@pytest.mark.parametrize(
    ("command", "make", "code"),
    [
        ("detect", _sliver, "image_too_small"),
        ("embed", _sliver, "image_too_small"),
        ("detect", _fifo_photo, "not_regular_file"),
        ("embed", _fifo_photo, "not_regular_file"),
    ],
    ids=["detect-sliver", "embed-sliver", "detect-fifo", "embed-fifo"],
)
def test_a_bad_photo_alone_is_its_code_and_exit_3(
    tmp_path: Path, command: str, make: Callable[[Path], Path], code: str
) -> None:
    # issue 15 #6 and #14: a FIFO hung in open(); a sliver reached ONNX Runtime
    import signal

    photo = make(tmp_path)
    args = [command, str(photo)] + (["--json"] if command == "detect" else ["-o", str(tmp_path / "o.jsonl")])
    signal.alarm(60)
    try:
        exit_code, output = invoke(args)
    finally:
        signal.alarm(0)
    assert exit_code == 3, output
    written = output if command == "detect" else (tmp_path / "o.jsonl").read_text()
    assert code in written, written
