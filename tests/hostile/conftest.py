"""Shared checks of the hostile corpus: what a run may touch, and what it must leave behind.

Every case of ``tests/hostile`` asserts the same invariants, whatever it feeds in:

- a clear error code and no traceback;
- nothing written outside the output it was given, and no input changed or destroyed (a snapshot of the
  whole workspace before and after, by type and sha256; FIFOs and devices are never opened);
- no lost rows (each dataset's ``output.csv`` has one row per input row);
- no process left behind (no child of the test process outlives the run).
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

Snapshot = dict[str, tuple[str, str]]


def snapshot(root: Path) -> Snapshot:
    """Every entry under ``root``: its kind and, for regular files, the sha256 of its bytes (never opening others)."""
    found: Snapshot = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            relative = path.relative_to(root).as_posix()
            if stat.S_ISLNK(info.st_mode):
                found[relative] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                found[relative] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            elif stat.S_ISDIR(info.st_mode):
                found[relative] = ("dir", "")
            else:
                found[relative] = ("special", oct(stat.S_IFMT(info.st_mode)))
    return found


def assert_only_outputs_changed(before: Snapshot, after: Snapshot, outputs: tuple[str, ...]) -> None:
    """Inputs unchanged, and anything new or changed lies under one of ``outputs`` (workspace-relative)."""

    def is_output(name: str) -> bool:
        return any(name == out or name.startswith(out.rstrip("/") + "/") for out in outputs)

    changed = sorted(name for name, entry in before.items() if after.get(name) != entry and not is_output(name))
    assert changed == [], f"inputs changed or destroyed: {changed}"
    created = sorted(name for name in after.keys() - before.keys() if not is_output(name))
    assert created == [], f"written outside the output: {created}"


def child_pids(parent: int | None = None) -> set[int]:
    """Live children of ``parent`` (default: this process), read from /proc (zombies excluded)."""
    parent = os.getpid() if parent is None else parent
    found: set[int] = set()
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == parent:
            found.add(int(entry.name))
    return found


@pytest.fixture
def no_leftover_processes() -> Iterator[None]:
    """Fails the test if it leaves a child process of this one running."""
    before = child_pids()
    yield
    left = child_pids() - before
    assert left == set(), f"processes left behind: {sorted(left)}"


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """``faceprint pairs`` through the real CLI, with the weight-free fake pipeline instead of the models."""
    from faceprint.testing import fake_pipeline_factory

    monkeypatch.setattr("faceprint.batch.pairs.default_pipeline_factory", fake_pipeline_factory)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder on a real read-only file system (a tmpfs remounted ro); skips where mounting is not allowed.

    Root ignores permission bits, so a chmod'ed folder proves nothing when the suite runs as root.
    """
    import shutil

    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) for a real read-only file system")
    point = tmp_path / "ro-mount"
    point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(point)], check=False).returncode:
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        if subprocess.run(["mount", "-o", "remount,ro", str(point)], check=False).returncode:
            pytest.skip("remounting read-only is not allowed here")
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on a real 64 KiB file system, to fill up (ENOSPC); skips where mounting is not allowed."""
    import shutil

    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) for a tiny file system")
    point = tmp_path / "tiny-mount"
    point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(point)], check=False).returncode:
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)
