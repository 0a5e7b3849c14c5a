"""check_output_path and the errno mapping of atomic writes (faceprint.io.output, faceprint.io.atomic)."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import pytest

from faceprint.errors import (
    EXIT_OUTPUT,
    DiskFullError,
    OutputIsDirectoryError,
    OutputIsInputError,
    OutputNotDirectoryError,
    OutputNotRegularError,
    OutputNotWritableError,
    OutputParentMissingError,
    OutputWriteError,
    ReadOnlyOutputError,
    UsageError,
)
from faceprint.io import atomic
from faceprint.io.atomic import open_atomic, write_atomic
from faceprint.io.output import check_output_path, output_write_error


def test_a_new_file_in_an_existing_folder_is_fine(tmp_path: Path) -> None:
    assert check_output_path(tmp_path / "out.tar.gz") == tmp_path / "out.tar.gz"
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind


def test_an_existing_regular_file_may_be_replaced(tmp_path: Path) -> None:
    (tmp_path / "old.csv").write_text("x")
    assert check_output_path(tmp_path / "old.csv", inputs=[tmp_path / "other.csv"]).name == "old.csv"


def test_output_equal_to_an_input_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "dataset.tar.gz"
    source.write_bytes(b"data")
    with pytest.raises(OutputIsInputError) as caught:
        check_output_path(source, inputs=[source])
    assert caught.value.code == "output_is_input" and isinstance(caught.value, UsageError)
    # The same file under another name: a hard link, a symlink, a path with "..".
    os.link(source, tmp_path / "hard.tar.gz")
    (tmp_path / "soft.tar.gz").symlink_to(source)
    (tmp_path / "sub").mkdir()
    for alias in (tmp_path / "hard.tar.gz", tmp_path / "soft.tar.gz", tmp_path / "sub" / ".." / "dataset.tar.gz"):
        with pytest.raises(OutputIsInputError):
            check_output_path(alias, inputs=[source])
    assert source.read_bytes() == b"data"


def test_device_fifo_and_socket_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        for path in (Path("/dev/null"), fifo, tmp_path / "sock"):
            with pytest.raises(OutputNotRegularError):
                check_output_path(path)
    (tmp_path / "to-null").symlink_to("/dev/null")
    with pytest.raises(OutputNotRegularError):
        check_output_path(tmp_path / "to-null")
    assert Path("/dev/null").is_char_device()


def test_file_versus_folder(tmp_path: Path) -> None:
    with pytest.raises(OutputIsDirectoryError):
        check_output_path(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputNotDirectoryError):
        check_output_path(tmp_path / "file", kind="dir")
    with pytest.raises(OutputParentMissingError):
        check_output_path(tmp_path / "missing" / "out.csv")
    with pytest.raises(OutputParentMissingError):
        check_output_path(tmp_path / "file" / "out.csv")
    with pytest.raises(OutputParentMissingError):
        check_output_path(tmp_path / "file" / "sub", kind="dir")


def test_a_folder_output_may_be_created_but_not_inside_an_input(tmp_path: Path) -> None:
    assert check_output_path(tmp_path / "a" / "b", kind="dir").name == "b"
    assert not (tmp_path / "a").exists()  # checking creates nothing
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    for bad in (dataset, dataset / "results"):
        with pytest.raises(OutputIsInputError):
            check_output_path(bad, kind="dir", inputs=[dataset])
    # A new results *file* beside the photos changes nothing that is read; an existing one is an input.
    assert check_output_path(dataset / "results.tar.gz", inputs=[dataset]).name == "results.tar.gz"
    (dataset / "sub").mkdir()
    (dataset / "sub" / "photo.jpg").write_bytes(b"photo")
    with pytest.raises(OutputIsInputError, match="file of the input folder"):
        check_output_path(dataset / "sub" / "photo.jpg", inputs=[dataset])
    assert (dataset / "sub" / "photo.jpg").read_bytes() == b"photo"
    (dataset / "results.tar.gz").write_bytes(b"an earlier run")  # not read from the folder: may be replaced
    assert check_output_path(dataset / "results.tar.gz", inputs=[dataset]).name == "results.tar.gz"


@pytest.mark.parametrize(
    ("number", "cls", "code"),
    [
        (errno.ENOSPC, DiskFullError, "disk_full"),
        (errno.EDQUOT, DiskFullError, "disk_full"),
        (errno.EROFS, ReadOnlyOutputError, "read_only_output"),
        (errno.EACCES, OutputNotWritableError, "output_not_writable"),
        (errno.EPERM, OutputNotWritableError, "output_not_writable"),
    ],
)
def test_errno_mapping(number: int, cls: type[OutputWriteError], code: str) -> None:
    mapped = output_write_error(OSError(number, os.strerror(number)), "out.csv")
    assert isinstance(mapped, cls) and mapped.code == code and mapped.exit_code == EXIT_OUTPUT
    assert "out.csv" in mapped.message


def test_probe_failure_is_mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("faceprint.io.output.tempfile.mkstemp", read_only)
    with pytest.raises(ReadOnlyOutputError):
        check_output_path(tmp_path / "out.csv")
    with pytest.raises(ReadOnlyOutputError):
        check_output_path(tmp_path / "new", kind="dir")


def test_disk_full_while_writing_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.csv"
    path.write_bytes(b"old")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(DiskFullError) as caught:
        write_atomic(path, b"new")
    assert caught.value.details["errno"] == "ENOSPC"
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_read_error_inside_the_block_is_not_called_an_output_problem(tmp_path: Path) -> None:
    with pytest.raises(PermissionError), open_atomic(tmp_path / "out.csv"):
        raise PermissionError(errno.EACCES, "cannot read the input")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to drop to another uid")
def test_permission_denied_for_a_real_other_user(tmp_path: Path) -> None:
    # Root ignores permission bits, so the check runs as nobody in a child, on a real 0555 folder.
    import subprocess
    import sys

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    tmp_path.chmod(0o755)
    code = (
        "import sys; from faceprint.io.output import check_output_path\n"
        "from faceprint.errors import FaceprintError\n"
        "try:\n    check_output_path(sys.argv[1])\nexcept FaceprintError as err:\n    print(err.code)\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(locked / "out.csv")],
            user=65534,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except PermissionError as err:
        pytest.skip(f"the interpreter is not runnable as nobody: {err}")
    if "Permission denied" in done.stderr or "ModuleNotFoundError" in done.stderr:
        pytest.skip(f"the package is not readable as nobody: {done.stderr[-200:]}")
    assert done.stdout.strip() == "output_not_writable", done.stderr
