"""Process faults of ``faceprint pairs``: signals to the main process, a dying worker, ``kill -9``.

The CLI runs in a process of its own (``fault_runner.py``: the real app with a slowed or poisoned fake
pipeline, so no weights are needed) with worker processes. Each case asserts a clear exit and message, no
traceback, no half-written output, and that no process of the run (pool workers, the resource tracker)
outlives it.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from PIL import Image

from faceprint.testing import make_face_png

RUNNER = Path(__file__).with_name("fault_runner.py")
PHOTOS = 60
"""Enough photos for the engine to use its worker processes (it keeps small jobs in-process)."""
pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="process checks read /proc (Linux)")


def _descendants(pid: int) -> set[int]:
    """Every live process whose ancestry leads to ``pid`` (zombies excluded), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier} - found
        found |= children
        frontier = children
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _wait_gone(pids: set[int], timeout_s: float) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = _alive(pids)
        if not left:
            return set()
        time.sleep(0.2)
    return _alive(pids)


def _kill_all(pids: set[int]) -> None:
    for pid in _alive(pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _dataset(root: Path, count: int, *, poison: bool = False) -> Path:
    root.mkdir(parents=True)
    rows = []
    for index in range(count):
        (root / f"{index:03d}.png").write_bytes(make_face_png((10 + index * 3 % 240, 80, 160)))
        rows.append(f"{index:03d}.png,000.png")
    if poison:
        buffer = io.BytesIO()
        Image.new("RGB", (32, 32), (0, 255, 0)).save(buffer, "PNG")
        (root / "poison.png").write_bytes(buffer.getvalue())
        rows.insert(1, "poison.png,000.png")
    (root / "pairs.csv").write_text("\n".join(rows) + "\n")
    return root


def _start(tmp_path: Path, mode: str, dataset: Path, *, delay_s: float = 0.5) -> subprocess.Popen[str]:
    env = {**os.environ, "FAULT_MARKER": str(tmp_path / "started"), "FAULT_DELAY_S": str(delay_s)}
    args = [sys.executable, str(RUNNER), mode, "pairs", str(dataset), "-o", str(tmp_path / "r.tar.gz"), "-q"]
    return subprocess.Popen(
        [*args, "--workers", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_started(tmp_path: Path, process: subprocess.Popen[str], timeout_s: float = 90) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while not (tmp_path / "started").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            out, err = process.communicate()
            pytest.fail(f"the job never started (exit {process.returncode}): {out} {err}")
        time.sleep(0.1)
    time.sleep(0.3)  # every worker is up once the first photo is being detected
    workers = _descendants(process.pid)
    assert workers, "the job runs with worker processes"
    return workers


def test_ctrl_c_stops_the_job_cleanly(tmp_path: Path) -> None:
    process = _start(tmp_path, "slow", _dataset(tmp_path / "ds", PHOTOS))
    workers = _wait_started(tmp_path, process)
    try:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 130, err
        assert "interrupted" in err and "Traceback" not in err + out
        assert not (tmp_path / "r.tar.gz").exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".r.tar.gz")] == []  # no temp file
        assert _wait_gone(workers, 20) == set(), "workers outlived the interrupted job"
    finally:
        _kill_all(workers | {process.pid})


def test_sigterm_exits_like_ctrl_c_with_a_message(tmp_path: Path) -> None:
    process = _start(tmp_path, "slow", _dataset(tmp_path / "ds", PHOTOS))
    workers = _wait_started(tmp_path, process)
    try:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        assert process.returncode in (130, 143), err
        assert err.strip() and "Traceback" not in err + out
        assert not (tmp_path / "r.tar.gz").exists()
        assert _wait_gone(workers, 20) == set(), "workers outlived the terminated job"
    finally:
        _kill_all(workers | {process.pid})


def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    process = _start(tmp_path, "slow", _dataset(tmp_path / "ds", PHOTOS))
    workers = _wait_started(tmp_path, process)
    try:
        process.kill()
        process.communicate(timeout=30)
        assert _wait_gone(workers, 20) == set(), "pool workers (and the resource tracker) outlived kill -9"
    finally:
        _kill_all(workers | {process.pid})


def test_a_dying_worker_costs_only_its_photo(tmp_path: Path) -> None:
    process = _start(tmp_path, "poison", _dataset(tmp_path / "ds", PHOTOS, poison=True))
    try:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 1, err  # some rows not scored, output written
        assert "Traceback" not in err + out
        with tarfile.open(tmp_path / "r.tar.gz") as tar:
            output = tar.extractfile("input-0001/output.csv")
            errors = tar.extractfile("input-0001/processing.error")
            assert output is not None and errors is not None
            assert len(output.read().decode().splitlines()) == 1 + PHOTOS + 1  # every row kept
            lines = errors.read().decode().splitlines()[1:]
        assert len(lines) == 1 and "poison.png" in lines[0]
        assert any(code in lines[0] for code in ("worker_crashed", "internal_error"))
    finally:
        _kill_all(_descendants(process.pid) | {process.pid})


def test_concurrent_first_enrolments_of_one_new_name_make_one_person(tmp_path: Path) -> None:
    # issue 15 #20: 6 concurrent `gallery enroll --person` calls of a new name made 4 persons of that name
    from faceprint.gallery.sqlite import SqliteGallery

    gallery = tmp_path / "team.sqlite"
    photo = tmp_path / "jane.png"
    photo.write_bytes(make_face_png((200, 40, 40)))
    env = {**os.environ, "FAULT_START_AT": str(time.time() + 4.0)}  # every process is imported by then
    args = [sys.executable, str(RUNNER), "fake", "gallery", "enroll", str(gallery), str(photo), "--person", "Jane Roe"]
    SqliteGallery.create(gallery).close()
    racers = [
        subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)
    ]
    try:
        results = [racer.communicate(timeout=120) for racer in racers]
        assert [racer.returncode for racer in racers] == [0] * 6, results
        assert all("Traceback" not in out + err for out, err in results)
        with SqliteGallery.open(gallery) as opened:
            assert [(p.name, p.template_count) for p in opened.persons()] == [("Jane Roe", 6)]
    finally:
        _kill_all({racer.pid for racer in racers})
