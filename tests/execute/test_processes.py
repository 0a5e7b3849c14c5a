"""ProcessExecutor: workers kept between runs, a crash costs one task, workers die with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from faceprint.errors import ModelNotFoundError
from faceprint.execute.base import CancelledError
from faceprint.execute.local import LocalExecutor
from faceprint.execute.processes import ProcessExecutor
from faceprint.testing import ScriptedProgram

PROGRAM = ScriptedProgram()


def run_all(executor: ProcessExecutor | LocalExecutor, tasks: list[str]) -> dict[int, tuple[str, int]]:
    return dict(executor.run(PROGRAM, iter(enumerate(tasks))))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose (its parent has not reaped it yet).
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_workers_are_kept_between_runs() -> None:
    with ProcessExecutor(workers=2) as executor:
        first = run_all(executor, [f"t{i}" for i in range(6)])
        pids = set(executor.worker_pids())
        second = run_all(executor, [f"u{i}" for i in range(6)])
        assert set(executor.worker_pids()) == pids
    assert sorted(v[0] for v in first.values()) == sorted(f"t{i}" for i in range(6))
    assert {v[1] for v in second.values()} <= pids
    assert len(pids) == 2


def test_a_crash_costs_only_the_task_that_caused_it(tmp_path: Path) -> None:
    tasks = ["a", "die", "b", f"die-once:{tmp_path / 'marker'}", "c", "d"]
    with ProcessExecutor(workers=2) as executor:
        results = run_all(executor, tasks)
        # The pool is whole again after the crashes.
        assert len(executor.worker_pids()) == 2
    assert results[1][0].startswith("crashed: ") and "died on it twice" in results[1][0]
    assert results[3][0] == f"die-once:{tmp_path / 'marker'}"  # retried once on a fresh worker: done
    assert [results[i][0] for i in (0, 2, 4, 5)] == ["a", "b", "c", "d"]


def test_a_plain_exception_is_that_task_s_result_and_a_model_error_stops_the_run() -> None:
    with ProcessExecutor(workers=1) as executor:
        results = run_all(executor, ["a", "bug", "b"])
        assert results[1][0] == "failed: RuntimeError: a bug"
        with pytest.raises(ModelNotFoundError):
            run_all(executor, ["a", "model", "b"])
        # The workers that held stale tasks were replaced: the next run starts clean.
        assert run_all(executor, ["c"]) == {0: ("c", executor.worker_pids()[0])}


def test_cancel_stops_sending_and_raises() -> None:
    cancel = threading.Event()
    seen: list[int] = []
    with ProcessExecutor(workers=1) as executor, pytest.raises(CancelledError):
        for task_id, _ in executor.run(PROGRAM, iter(enumerate(["a"] * 50)), cancel=cancel):
            seen.append(task_id)
            cancel.set()
    assert 1 <= len(seen) <= 3  # what was already queued in the worker finishes, nothing more


def test_local_executor_runs_in_this_process() -> None:
    with LocalExecutor() as executor:
        results = run_all(executor, ["a", "bug"])
    assert results[0] == ("a", os.getpid())
    assert results[1][0] == "failed: RuntimeError: a bug"


PARENT = textwrap.dedent(
    """
    import sys, time
    from faceprint.execute.processes import ProcessExecutor
    from faceprint.testing import ScriptedProgram

    if __name__ == "__main__":
        executor = ProcessExecutor(workers=2)
        list(executor.run(ScriptedProgram(), iter(enumerate(["a", "b"]))))
        print(" ".join(map(str, executor.worker_pids())), flush=True)
        for _ in executor.run(ScriptedProgram(), iter(enumerate(["sleep:60"] * 4))):
            pass
    """
)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_their_parent(tmp_path: Path, how: signal.Signals) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
        time.sleep(0.5)  # the workers are now busy sleeping
        parent.send_signal(how)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 20  # a liveness bound, not a speed claim
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in pids)
    finally:
        parent.kill()
