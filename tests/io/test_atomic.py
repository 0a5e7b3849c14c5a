from __future__ import annotations

from pathlib import Path

import pytest

from faceprint.io.atomic import open_atomic, write_atomic


def test_write_atomic_replaces_content(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    write_atomic(path, b"first")
    write_atomic(path, b"second")
    assert path.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_error_inside_the_block_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), open_atomic(path) as handle:
        handle.write(b"half")
        raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_existing_permissions_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_bytes(b"old")
    path.chmod(0o600)
    write_atomic(path, b"new")
    assert path.stat().st_mode & 0o777 == 0o600
