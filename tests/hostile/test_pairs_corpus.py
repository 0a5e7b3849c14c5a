"""The hostile corpus for ``faceprint pairs``, driven through the real CLI (``faceprint.cli.main.app``).

Each case builds its inputs in a fresh workspace (archives, photos, CSVs, output paths), runs
``faceprint pairs`` with the weight-free fake pipeline, and asserts the invariants of
``tests/hostile/conftest.py``: the expected exit status and error codes, no traceback, nothing written
outside the output, no input destroyed, one output row per input row, no process left behind.
Issue 15 numbers the problems the first probe found; the cases after them grow the probe.
"""

from __future__ import annotations

import csv
import errno
import gzip
import io
import json
import os
import secrets
import signal
import struct
import tarfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from faceprint.testing import make_blank_png, make_face_png

from .conftest import assert_only_outputs_changed, child_pids, snapshot

RED, BLUE = (200, 30, 30), (30, 30, 200)
OUT = "out/results.tar.gz"


def photos() -> dict[str, bytes]:
    return {
        "red.png": make_face_png(RED),
        "red2.png": make_face_png(RED, size_wh=(40, 30)),
        "blue.png": make_face_png(BLUE),
    }


def folder(root: Path, files: Mapping[str, bytes], pairs: str | bytes | None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    if pairs is not None:
        (root / "pairs.csv").write_bytes(pairs.encode() if isinstance(pairs, str) else pairs)
    return root


def tgz(path: Path, members: Mapping[str, bytes | Callable[[tarfile.TarInfo], None]], *, gz: bool = True) -> Path:
    """A TAR(.GZ) with ``members``: bytes for a regular file, or a callable that shapes a special entry."""
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if callable(content):
                content(info)
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


def good_tgz(ws: Path, name: str = "ds.tgz", pairs: str = "red.png,blue.png\nred.png,red2.png\n") -> Path:
    return tgz(ws / name, {**photos(), "pairs.csv": pairs.encode()})


def out_args(ws: Path) -> list[str]:
    (ws / "out").mkdir(exist_ok=True)
    return ["-o", str(ws / OUT)]


def symlink_to(target: str) -> Callable[[tarfile.TarInfo], None]:
    def shape(info: tarfile.TarInfo) -> None:
        info.type, info.linkname = tarfile.SYMTYPE, target

    return shape


def char_device(info: tarfile.TarInfo) -> None:
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3


@dataclass(frozen=True)
class Case:
    """One hostile input: how to build it in a workspace, and what a correct run looks like."""

    build: Callable[[Path], list[str]]
    """Makes the inputs under the workspace; returns the arguments after ``pairs``."""
    exit_code: int
    codes: frozenset[str] = frozenset()
    """Codes that must appear: in processing.error when an archive is written, else on stderr."""
    rows: tuple[int, ...] | None = None
    """Data rows each dataset's output.csv must have (no lost rows)."""
    outputs: tuple[str, ...] = ("out",)
    """Workspace paths the run may write under."""
    patch: Callable[[pytest.MonkeyPatch], None] | None = None
    check: Callable[[Path, dict[str, bytes]], None] | None = None
    """Extra assertions on the workspace and the archive's files."""
    extra: dict[str, object] = field(default_factory=dict)


def _codes(*names: str) -> frozenset[str]:
    return frozenset(names)


# --- builders of the cases ------------------------------------------------------------------------------------


def output_is_input(ws: Path) -> list[str]:
    dataset = good_tgz(ws)
    return [str(dataset), "-o", str(dataset)]


def output_is_input_through_a_link(ws: Path) -> list[str]:
    dataset = good_tgz(ws)
    (ws / "alias.tgz").symlink_to(dataset)
    return [str(dataset), "-o", str(ws / "alias.tgz")]


def output_is_a_photo_of_the_input(ws: Path) -> list[str]:
    dataset = folder(ws / "ds", photos(), "red.png,blue.png\n")
    return [str(dataset), "-o", str(dataset / "red.png")]


def output_dev_null(ws: Path) -> list[str]:
    return [str(good_tgz(ws)), "-o", "/dev/null"]


def output_fifo(ws: Path) -> list[str]:
    os.mkfifo(ws / "out.fifo")
    return [str(good_tgz(ws)), "-o", str(ws / "out.fifo")]


def output_folder(ws: Path) -> list[str]:
    (ws / "out").mkdir()
    return [str(good_tgz(ws)), "-o", str(ws / "out")]


def output_parent_missing(ws: Path) -> list[str]:
    return [str(good_tgz(ws)), "-o", str(ws / "no" / "such" / "r.tar.gz")]


def output_parent_is_a_file(ws: Path) -> list[str]:
    (ws / "file").write_text("x")
    return [str(good_tgz(ws)), "-o", str(ws / "file" / "r.tar.gz")]


def other_folders_basename(ws: Path) -> list[str]:
    files = {"2020/face.png": make_face_png(RED), "red.png": make_face_png(RED)}
    pairs = "2019/face.png,red.png\nfile:///x/face.png,red.png\n2020/face.png,red.png\n"
    return [str(folder(ws / "ds", files, pairs)), *out_args(ws)]


def unterminated_quote(ws: Path) -> list[str]:
    pairs = 'red.png,"blue.png\nred.png,red2.png\nred.png,blue.png\nblue.png,red.png\n'
    return [str(folder(ws / "ds", photos(), pairs)), *out_args(ws)]


def fifo_dataset(ws: Path) -> list[str]:
    os.mkfifo(ws / "dataset.tgz")
    return [str(ws / "dataset.tgz"), str(good_tgz(ws)), *out_args(ws)]


def fifo_photo(ws: Path) -> list[str]:
    dataset = folder(ws / "ds", photos(), "red.png,pipe.png\nred.png,red2.png\n")
    os.mkfifo(dataset / "pipe.png")
    return [str(dataset), *out_args(ws)]


def _flip_crc(data: bytes) -> bytes:
    """The gzip stream with its trailer's CRC-32 changed: the data decompresses, the check must fail."""
    damaged = bytearray(data)
    damaged[-8] ^= 0xFF
    return bytes(damaged)


def crc_error(ws: Path) -> list[str]:
    dataset = good_tgz(ws)
    dataset.write_bytes(_flip_crc(dataset.read_bytes()))
    return [str(dataset), *out_args(ws)]


def truncated_tgz(ws: Path) -> list[str]:
    dataset = good_tgz(ws)
    dataset.write_bytes(dataset.read_bytes()[: dataset.stat().st_size // 2])
    return [str(dataset), *out_args(ws)]


def formula_injection(ws: Path) -> list[str]:
    files = {**photos(), "=cmd.png": make_face_png(RED), "@SUM.png": make_face_png(BLUE)}
    pairs = 'a,b,+note\n"=cmd.png",red.png,-2+3\n"@SUM.png",blue.png,x\n"=missing.png",red.png,y\n'
    return [str(folder(ws / "ds", files, pairs)), *out_args(ws), "--details"]


def check_formulas(ws: Path, files: dict[str, bytes]) -> None:
    rows = list(csv.reader(io.StringIO(files["input-0001/output.csv"].decode())))
    errors = list(csv.reader(io.StringIO(files["input-0001/processing.error"].decode())))
    for row in rows + errors:
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row), row
    assert rows[1][0] == "'=cmd.png" and rows[1][-1] == "'-2+3" and rows[0][-1] == "'+note"
    assert json.loads(files["input-0001/run.json"])["formula_escape"]["escaped_cells"] > 0


def unreadable_subfolder(ws: Path) -> list[str]:
    files = {**photos(), "locked/x.png": make_face_png(BLUE)}
    return [str(folder(ws / "ds", files, "red.png,blue.png\nlocked/x.png,red.png\n")), *out_args(ws)]


def patch_locked_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.scandir

    def scandir(path: str) -> object:
        if os.path.basename(path) == "locked":  # root lists anything, so the refusal is made here
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real(path)

    monkeypatch.setattr("faceprint.io.archive.os.scandir", scandir)


def empty_pairs(ws: Path) -> list[str]:
    return [str(folder(ws / "ds", photos(), "")), *out_args(ws)]


def header_only_pairs(ws: Path) -> list[str]:
    return [str(folder(ws / "ds", photos(), "file_a,file_b,note\n")), *out_args(ws)]


def identical_bytes(ws: Path) -> list[str]:
    broken = b"\xff\xd8\xff\xe0 not really a jpeg"
    files = {**photos(), "a.jpg": broken, "b.jpg": broken}
    return [str(folder(ws / "ds", files, "a.jpg,red.png\nb.jpg,red.png\n")), *out_args(ws)]


def check_own_messages(ws: Path, files: dict[str, bytes]) -> None:
    errors = list(csv.reader(io.StringIO(files["input-0001/processing.error"].decode())))[1:]
    assert [e[6].split(":")[0] for e in errors] == ["a.jpg", "b.jpg"]


def tiny_images(ws: Path) -> list[str]:
    slivers = {"dot.png": make_face_png(RED, size_wh=(1, 1)), "sliver.png": make_face_png(RED, size_wh=(1, 3000))}
    files = {**photos(), **slivers}
    return [str(folder(ws / "ds", files, "dot.png,red.png\nsliver.png,red.png\nred.png,red2.png\n")), *out_args(ws)]


def traversal_names(ws: Path) -> list[str]:
    pairs = "../../etc/passwd,red.png\n/etc/hostname,red.png\nC:\\Windows\\x.png,red.png\nred.png,blue.png\n"
    return [str(folder(ws / "ds", photos(), pairs)), *out_args(ws)]


def unsafe_members(ws: Path) -> list[str]:
    members: dict[str, bytes | Callable[[tarfile.TarInfo], None]] = {
        **photos(),
        "../escape.png": make_face_png(RED),
        "/abs.png": make_face_png(RED),
        "link.png": symlink_to("/etc/passwd"),
        "dev.png": char_device,
        "pairs.csv": b"red.png,blue.png\nescape.png,red.png\nlink.png,red.png\ndev.png,red.png\n",
    }
    return [str(tgz(ws / "ds.tgz", members)), *out_args(ws)]


def duplicate_members(ws: Path) -> list[str]:
    path = ws / "ds.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in [*photos().items(), ("twice.png", make_face_png(RED)), ("twice.png", make_face_png(BLUE))]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        pairs = b"red.png,twice.png\nred.png,blue.png\n"
        info = tarfile.TarInfo("pairs.csv")
        info.size = len(pairs)
        tar.addfile(info, io.BytesIO(pairs))
    return [str(path), *out_args(ws)]


def oversized_member(ws: Path) -> list[str]:
    big = b"\0" * (65 * 1024 * 1024)  # above the 64 MiB member limit; gzip makes it ~64 KB
    members = {**photos(), "huge.png": big, "pairs.csv": b"huge.png,red.png\nred.png,red2.png\n"}
    return [str(tgz(ws / "bomb.tgz", members)), *out_args(ws)]


def latin1_pairs(ws: Path) -> list[str]:
    files = {**photos(), "café.png": make_face_png(RED)}
    return [str(folder(ws / "ds", files, "caf\xe9.png,red.png\nred.png,blue.png\n".encode("latin-1"))), *out_args(ws)]


def utf16_pairs(ws: Path) -> list[str]:
    return [str(folder(ws / "ds", photos(), "red.png\tblue.png\r\n".encode("utf-16"))), *out_args(ws)]


def nul_in_names(ws: Path) -> list[str]:
    return [str(folder(ws / "ds", photos(), b"red\0.png,blue.png\nred.png,blue.png\n")), *out_args(ws)]


def two_pairs_files(ws: Path) -> list[str]:
    files = {**photos(), "sub/pairs.csv": b"red.png,blue.png\n"}
    return [str(folder(ws / "ds", files, "red.png,blue.png\n")), *out_args(ws)]


def no_pairs_file(ws: Path) -> list[str]:
    return [str(folder(ws / "ds", photos(), None)), *out_args(ws)]


def text_as_dataset(ws: Path) -> list[str]:
    (ws / "notes.tgz").write_text("this is not an archive\n" * 40)
    (ws / "empty.tar").write_bytes(b"")
    return [str(ws / "notes.tgz"), str(ws / "empty.tar"), *out_args(ws)]


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def hostile_images(ws: Path) -> list[str]:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, "GIF")
    bomb = _png_header_only(30_000, 30_000)  # 60 bytes that claim 900 megapixels
    files = {
        **photos(),
        "anim.gif": buffer.getvalue(),
        "bomb.png": bomb,
        "truncated.png": make_face_png(RED)[:60],
        "empty.png": b"",
        "grey.png": make_blank_png(),
    }
    pairs = "anim.gif,red.png\nbomb.png,red.png\ntruncated.png,red.png\nempty.png,red.png\ngrey.png,red.png\n"
    return [str(folder(ws / "ds", files, pairs)), *out_args(ws)]


def symlink_out_of_dataset(ws: Path) -> list[str]:
    dataset = folder(ws / "ds", photos(), "red.png,outside.png\nred.png,blue.png\n")
    (ws / "secret.png").write_bytes(make_face_png(BLUE))
    (dataset / "outside.png").symlink_to(ws / "secret.png")
    return [str(dataset), *out_args(ws)]


def missing_dataset(ws: Path) -> list[str]:
    return [str(ws / "nope"), *out_args(ws)]


def long_names(ws: Path) -> list[str]:
    pairs = f"{'x' * 5000}.png,red.png\n\"[bold red]x[/]\",red.png\nred.png,blue.png\n"
    return [str(folder(ws / "ds", photos(), pairs)), *out_args(ws)]


def disk_full_at_write(ws: Path) -> list[str]:
    return [str(good_tgz(ws)), *out_args(ws)]


def patch_disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("faceprint.io.atomic.os.fsync", full)


def patch_read_only_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("faceprint.io.output.tempfile.mkstemp", read_only)


def enclave_output_is_a_file(ws: Path) -> list[str]:
    folder(ws / "in" / "input-0001", photos(), "red.png,blue.png\n")
    (ws / "out").write_text("a file")
    return ["--inputs-dir", str(ws / "in"), "--output-dir", str(ws / "out")]


def enclave_output_inside_inputs(ws: Path) -> list[str]:
    folder(ws / "in" / "input-0001", photos(), "red.png,blue.png\n")
    return ["--inputs-dir", str(ws / "in"), "--output-dir", str(ws / "in" / "results")]


def enclave_fifo_in_output(ws: Path) -> list[str]:
    folder(ws / "in" / "input-0001", photos(), "red.png,blue.png\n")
    (ws / "out" / "input-0001").mkdir(parents=True)
    os.mkfifo(ws / "out" / "input-0001" / "run.json")
    return ["--inputs-dir", str(ws / "in"), "--output-dir", str(ws / "out")]


def enclave_mixed(ws: Path) -> list[str]:
    folder(ws / "in" / "input-0001", photos(), "red.png,blue.png\n")
    folder(ws / "in" / "input-0002", photos(), "")
    (ws / "in" / "input-0003").mkdir()
    (ws / "in" / "input-0004").mkdir()
    damaged = good_tgz(ws / "in" / "input-0004")
    damaged.write_bytes(_flip_crc(damaged.read_bytes()))
    return ["--inputs-dir", str(ws / "in"), "--output-dir", str(ws / "out")]


def bzip2_dataset(ws: Path) -> list[str]:
    import bz2

    plain = tgz(ws / "plain.tar", {**photos(), "pairs.csv": b"red.png,blue.png\n"}, gz=False)
    (ws / "ds.tar.bz2").write_bytes(bz2.compress(plain.read_bytes()))
    plain.unlink()
    return [str(ws / "ds.tar.bz2"), *out_args(ws)]


def zip_dataset(ws: Path) -> list[str]:
    import zipfile

    with zipfile.ZipFile(ws / "ds.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in {**photos(), "pairs.csv": b"red.png,blue.png\nred.png,red2.png\n"}.items():
            archive.writestr(f"deep/set/{name}", data)
    return [str(ws / "ds.zip"), *out_args(ws)]


def zip_slip_and_symlink(ws: Path) -> list[str]:
    import stat
    import zipfile

    link = zipfile.ZipInfo("link.png")
    link.create_system, link.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(ws / "ds.zip", "w") as archive:
        for name, data in {**photos(), "pairs.csv": b"red.png,blue.png\nlink.png,red.png\n"}.items():
            archive.writestr(name, data)
        archive.writestr("../../escaped.png", photos()["red.png"])
        archive.writestr(link, "/etc/passwd")
    return [str(ws / "ds.zip"), *out_args(ws)]


def hard_link_member(ws: Path) -> list[str]:
    def hard(info: tarfile.TarInfo) -> None:
        info.type, info.linkname = tarfile.LNKTYPE, "red.png"

    members = {**photos(), "again.png": hard, "pairs.csv": b"again.png,red.png\nred.png,blue.png\n"}
    return [str(tgz(ws / "ds.tgz", members)), *out_args(ws)]


def nested_with_macos_forks(ws: Path) -> list[str]:
    files = {f"set/{k}": v for k, v in photos().items()} | {"__MACOSX/set/._pairs.csv": b"\0\5junk"}
    dataset = folder(ws / "ds", files, None)
    (dataset / "set" / "pairs.csv").write_text("red.png,blue.png\nred.png,red2.png\n")
    return [str(dataset), *out_args(ws)]


CASES: dict[str, Case] = {
    # issue 15, in its order
    "01-output-is-input": Case(output_is_input, 2, _codes("output_is_input")),
    "01-output-is-input-via-link": Case(output_is_input_through_a_link, 2, _codes("output_is_input")),
    "01-output-is-a-photo-of-the-input": Case(output_is_a_photo_of_the_input, 2, _codes("output_is_input")),
    "02-output-dev-null": Case(output_dev_null, 2, _codes("output_not_regular")),
    "02-output-fifo": Case(output_fifo, 2, _codes("output_not_regular")),
    "03-other-folders-basename": Case(other_folders_basename, 1, _codes("missing_file"), rows=(3,)),
    "05-unterminated-quote": Case(unterminated_quote, 1, _codes("malformed_csv"), rows=(4,)),
    "06-fifo-dataset": Case(fifo_dataset, 1, _codes("not_regular_file"), rows=(0, 2)),
    "06-fifo-photo": Case(fifo_photo, 1, _codes("unsafe_archive_member"), rows=(2,)),
    "07-gzip-crc-error": Case(crc_error, 3, _codes("archive_error"), rows=(0,)),
    "08-formula-injection": Case(formula_injection, 1, _codes("missing_file"), rows=(3,), check=check_formulas),
    "09-unreadable-subfolder": Case(
        unreadable_subfolder, 1, _codes("unreadable_member"), rows=(2,), patch=patch_locked_folder
    ),
    "12-read-only-output": Case(disk_full_at_write, 73, _codes("read_only_output"), patch=patch_read_only_probe),
    "12-disk-full-while-writing": Case(disk_full_at_write, 73, _codes("disk_full"), patch=patch_disk_full),
    "13-enclave-output-is-a-file": Case(enclave_output_is_a_file, 2, _codes("output_not_directory")),
    "13-enclave-output-inside-inputs": Case(enclave_output_inside_inputs, 2, _codes("output_is_input")),
    "14-tiny-images": Case(tiny_images, 1, _codes("image_too_small"), rows=(3,)),
    "24-identical-bytes": Case(identical_bytes, 3, _codes("decode_error"), rows=(2,), check=check_own_messages),
    "25-empty-pairs-csv": Case(empty_pairs, 3, _codes("no_pairs"), rows=(0,)),
    "25-header-only-pairs-csv": Case(header_only_pairs, 3, _codes("no_pairs"), rows=(0,)),
    # beyond the first probe
    "output-folder": Case(output_folder, 2, _codes("output_is_directory")),
    "output-parent-missing": Case(output_parent_missing, 2, _codes("output_parent_missing")),
    "output-parent-is-a-file": Case(output_parent_is_a_file, 2, _codes("output_parent_missing")),
    "traversal-names": Case(traversal_names, 1, _codes("missing_file"), rows=(4,)),
    "unsafe-archive-members": Case(unsafe_members, 1, _codes("unsafe_archive_member", "missing_file"), rows=(4,)),
    "duplicate-members": Case(duplicate_members, 1, _codes("unsafe_archive_member"), rows=(2,)),
    "oversized-member": Case(oversized_member, 1, _codes("unsafe_archive_member"), rows=(2,)),
    "truncated-tgz": Case(truncated_tgz, 3, _codes("archive_error"), rows=(0,)),
    "latin-1-pairs-csv": Case(latin1_pairs, 1, _codes("malformed_csv"), rows=(2,)),
    "utf-16-pairs-csv": Case(utf16_pairs, 0, rows=(1,)),
    "nul-in-names": Case(nul_in_names, 1, _codes("malformed_csv"), rows=(2,)),
    "two-pairs-csv": Case(two_pairs_files, 3, _codes("pairs_file_error"), rows=(0,)),
    "no-pairs-csv": Case(no_pairs_file, 3, _codes("pairs_file_error"), rows=(0,)),
    "text-and-empty-file-as-datasets": Case(text_as_dataset, 3, _codes("archive_error"), rows=(0, 0)),
    "hostile-images": Case(
        hostile_images, 3, _codes("unsupported_format", "image_too_large", "decode_error", "no_face"), rows=(5,)
    ),
    "symlink-out-of-dataset": Case(symlink_out_of_dataset, 1, _codes("unsafe_archive_member"), rows=(2,)),
    "missing-dataset": Case(missing_dataset, 2, _codes("usage_error")),
    "long-and-markup-names": Case(long_names, 1, _codes("missing_file"), rows=(3,)),
    "bzip2-dataset": Case(bzip2_dataset, 3, _codes("archive_error"), rows=(0,)),
    "zip-dataset": Case(zip_dataset, 0, rows=(2,)),
    "zip-slip-and-symlink": Case(zip_slip_and_symlink, 1, _codes("unsafe_archive_member"), rows=(2,)),
    "hard-link-member": Case(hard_link_member, 1, _codes("unsafe_archive_member"), rows=(2,)),
    "nested-with-macos-forks": Case(nested_with_macos_forks, 0, rows=(2,)),
    "enclave-fifo-in-output": Case(enclave_fifo_in_output, 2, _codes("output_not_regular")),
    "enclave-mixed-datasets": Case(
        enclave_mixed, 1, _codes("no_pairs", "pairs_file_error", "archive_error"), rows=(1, 0, 0, 0)
    ),
}


def _archive_files(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {
            info.name: handle.read()
            for info in tar.getmembers()
            if info.isfile() and (handle := tar.extractfile(info)) is not None
        }


@pytest.mark.usefixtures("fake_models")
@pytest.mark.parametrize("case_id", sorted(CASES))
def test_pairs_hostile_case(case_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from faceprint.cli.main import app

    case = CASES[case_id]
    ws = tmp_path / "ws"
    ws.mkdir()
    args = case.build(ws)
    if case.patch is not None:
        case.patch(monkeypatch)
    before = snapshot(ws)
    children = child_pids()
    signal.alarm(60)  # a hang (a FIFO opened, a stuck worker) fails the case instead of the whole suite
    try:
        result = CliRunner().invoke(app, ["pairs", *args, "--workers", "1", "-q"])
    finally:
        signal.alarm(0)

    output = result.output
    assert "Traceback" not in output and (result.exception is None or isinstance(result.exception, SystemExit)), (
        output,
        result.exception,
    )
    assert result.exit_code == case.exit_code, output
    assert child_pids() - children == set()
    assert_only_outputs_changed(before, snapshot(ws), case.outputs)
    assert Path("/dev/null").is_char_device()

    archive = next((p for p in (ws / OUT, ws / "out" / "results.tar.gz") if p.is_file()), None)
    if case.rows is None:
        assert archive is None, "a refused run must write nothing"
        for code in case.codes:
            assert f"[{code}]" in output, output
        assert len(output.strip().splitlines()) == 1, output  # one clear line
        return
    assert archive is not None, output
    files = _archive_files(archive)
    found: set[str] = set()
    for index, rows in enumerate(case.rows, start=1):
        table = list(csv.reader(io.StringIO(files[f"input-{index:04d}/output.csv"].decode("utf-8"))))
        assert len(table) - 1 == rows, f"input-{index:04d}: {len(table) - 1} rows, expected {rows}"
        errors = files.get(f"input-{index:04d}/processing.error")
        if errors is not None:
            found |= {line[5] for line in list(csv.reader(io.StringIO(errors.decode("utf-8"))))[1:]}
    assert case.codes <= found, f"missing codes {sorted(case.codes - found)}; found {sorted(found)}"
    if case.exit_code == 0:
        assert found == set()
    if case.check is not None:
        case.check(ws, files)


@pytest.mark.usefixtures("fake_models")
def test_a_real_read_only_file_system_is_refused_before_any_work(read_only_dir: Path, tmp_path: Path) -> None:
    from faceprint.cli.main import app

    ws = tmp_path / "ws"
    ws.mkdir()
    dataset = good_tgz(ws)
    args = ["pairs", str(dataset), "-o", str(read_only_dir / "r.tar.gz"), "-q", "--workers", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 73 and "[read_only_output]" in result.output, result.output
    assert "Traceback" not in result.output and list(read_only_dir.iterdir()) == []


@pytest.mark.usefixtures("fake_models")
def test_a_real_full_disk_is_disk_full_and_leaves_no_partial_file(tiny_disk: Path, tmp_path: Path) -> None:
    from faceprint.cli.main import app

    ws = tmp_path / "ws"
    ws.mkdir()
    # Incompressible extra cells make an archive far larger than the 64 KiB file system.
    rows = "".join(f"red.png,blue.png,{secrets.token_hex(32)}\n" for _ in range(4000))
    dataset = folder(ws / "ds", photos(), rows)
    args = ["pairs", str(dataset), "-o", str(tiny_disk / "r.tar.gz"), "-q", "--workers", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 73 and "[disk_full]" in result.output, result.output
    assert "Traceback" not in result.output
    assert list(tiny_disk.iterdir()) == []  # the temp file was removed, no half archive


def test_the_gzip_helper_really_corrupts_only_the_trailer(tmp_path: Path) -> None:
    # Guards case 07: the flipped byte is the CRC, so the data itself still decompresses.
    data = good_tgz(tmp_path).read_bytes()
    with pytest.raises(gzip.BadGzipFile, match="CRC"):
        gzip.decompress(_flip_crc(data))
    assert gzip.decompress(data)


@pytest.mark.integration
def test_real_models_never_see_degenerate_images(examples_dir: Path, tmp_path: Path) -> None:
    # issue 15 #14 with the real pipeline: slivers were ONNX Runtime tracebacks / internal_error, and ANSI
    # ONNX log lines went to stderr; now they are image_too_small at decode, and the real pairs still score.
    from faceprint.cli.main import app

    ws = tmp_path / "ws"
    files = {
        "obama.jpg": (examples_dir / "obama.jpg").read_bytes(),
        "obama2.jpg": (examples_dir / "obama2.jpg").read_bytes(),
        "biden.jpg": (examples_dir / "biden.jpg").read_bytes(),
        "dot.png": make_face_png(RED, size_wh=(1, 1)),
        "sliver.png": make_face_png(RED, size_wh=(1, 20_000)),
    }
    pairs = "obama.jpg,obama2.jpg\nobama.jpg,biden.jpg\ndot.png,obama.jpg\nsliver.png,biden.jpg\n"
    dataset = folder(ws / "ds", files, pairs)
    before = snapshot(ws)
    result = CliRunner().invoke(app, ["pairs", str(dataset), *out_args(ws), "--workers", "1", "-q", "--details"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "\x1b[" not in result.output and "onnxruntime" not in result.output
    assert_only_outputs_changed(before, snapshot(ws), ("out",))
    files_out = _archive_files(ws / OUT)
    rows = list(csv.reader(io.StringIO(files_out["input-0001/output.csv"].decode())))[1:]
    assert [row[7] for row in rows] == ["ok", "ok", "image_too_small", "image_too_small"]
    assert rows[0][5] == "1" and float(rows[0][2].rstrip("%")) > float(rows[1][2].rstrip("%"))
