"""DaskExecutor on a LocalCluster and on real ``dask scheduler`` + ``dask worker`` processes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed", reason="the Dask executor needs the 'dask' extra")

from faceprint.errors import FaceprintError, InputError, ModelError, UsageError  # noqa: E402
from faceprint.execute.base import CancelledError  # noqa: E402
from faceprint.execute.dask import DaskExecutor, DaskUnavailableError, parse_dask_url  # noqa: E402


@dataclass(frozen=True)
class Program:
    """Doubles numbers; records which worker process and which build of its state did each one."""

    delay_s: float = 0.0
    poison: int | None = None
    """A task that kills its worker process (like a native crash)."""
    fail_build: bool = False

    def build(self) -> dict[str, Any]:
        if self.fail_build:
            raise ModelError("weights missing on this worker")
        return {"pid": os.getpid(), "build": uuid.uuid4().hex}

    def run(self, state: dict[str, Any], task: int) -> tuple[int, int, str]:
        if task == self.poison:
            os.kill(os.getpid(), signal.SIGKILL)
        if task < 0:
            raise InputError(f"negative: {task}")
        if task == 13:
            raise ValueError("unlucky")
        time.sleep(self.delay_s)
        return (task * 2, state["pid"], state["build"])

    def failed(self, task: int, message: str, *, crashed: bool) -> tuple[int, int, str]:
        return (-1, -1, f"{'crashed' if crashed else 'failed'}: {message}")


# Workers in other processes cannot import this test module: send the test program by value.
cloudpickle = pytest.importorskip("cloudpickle")
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _tasks(values: list[int]) -> Iterator[tuple[int, int]]:
    return iter(list(enumerate(values)))


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None, silence_logs=40
    )
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


def test_dask_urls() -> None:
    assert parse_dask_url("dask://127.0.0.1:8786") == "tcp://127.0.0.1:8786"
    assert parse_dask_url("dask://scheduler") == "tcp://scheduler:8786"
    assert parse_dask_url("dask://[::1]:9000") == "tcp://[::1]:9000"
    for bad in ("tcp://x:1", "dask://", "dask://x:port", "dask://x:1/path"):
        with pytest.raises(UsageError):
            parse_dask_url(bad)


def test_results_come_back_once_each_with_the_state_built_once_per_worker(local_cluster: Any) -> None:
    with DaskExecutor(client=local_cluster, chunk_size=4) as executor:
        assert executor.slots == 4 * 2 * 2
        values = list(range(100))
        got = dict(executor.run(Program(), _tasks(values)))
        again = dict(executor.run(Program(), _tasks(values)))  # a second job reuses the built states
    assert sorted(got) == list(range(100))
    assert [got[i][0] for i in range(100)] == [2 * v if v != 13 else -1 for v in values]
    builds = {result[2] for result in [*got.values(), *again.values()] if result[0] >= 0}
    assert 1 <= len(builds) <= 2  # two workers: at most two builds, however many chunks and jobs


def test_per_item_problems_are_results_not_errors(local_cluster: Any) -> None:
    with DaskExecutor(client=local_cluster, chunk_size=3) as executor:
        got = dict(executor.run(Program(), _tasks([1, -5, 13, 2])))
    assert got[0][0] == 2 and got[3][0] == 4
    assert got[1] == (-1, -1, "failed: negative: -5")
    assert got[2][2] == "failed: ValueError: unlucky"


def test_a_model_error_stops_the_run(local_cluster: Any) -> None:
    with DaskExecutor(client=local_cluster) as executor, pytest.raises(FaceprintError) as caught:
        list(executor.run(Program(fail_build=True), _tasks([1, 2, 3])))
    assert caught.value.code == "model_error"


def test_memory_is_bounded_by_pulling_tasks_lazily(local_cluster: Any) -> None:
    pulled = 0

    def endless() -> Iterator[tuple[int, int]]:
        nonlocal pulled
        for i in range(10**9):
            pulled += 1
            yield i, i

    with DaskExecutor(client=local_cluster, chunk_size=5, chunks_per_thread=1) as executor:
        stream = executor.run(Program(), endless())
        first = [next(stream) for _ in range(30)]
        stream.close()
    assert len(first) == 30
    assert pulled <= 30 + 5 * 1 * 2 + 5  # what was yielded, plus one chunk per thread in flight


def test_cancel_stops_sending_and_raises(local_cluster: Any) -> None:
    cancel = threading.Event()
    seen = []
    with DaskExecutor(client=local_cluster, chunk_size=2) as executor, pytest.raises(CancelledError):
        for task_id, result in executor.run(Program(delay_s=0.01), _tasks(list(range(1000))), cancel=cancel):
            seen.append((task_id, result))
            cancel.set()
    assert 1 <= len(seen) < 100


def test_an_unreachable_scheduler_is_a_clear_error() -> None:
    with pytest.raises(DaskUnavailableError):
        DaskExecutor("tcp://127.0.0.1:9", connect_timeout_s=1)


# --- real processes ------------------------------------------------------------------------------------


def _dask_cli() -> str:
    return str(Path(sys.executable).with_name("dask"))


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    info = tmp_path / "scheduler.json"
    proc = subprocess.Popen(
        [
            _dask_cli(),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(info),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # A task is declared a worker killer after 2 deaths instead of 4: the poison test runs faster.
        env={**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while not info.exists() or not info.read_text().strip():
            assert proc.poll() is None and time.monotonic() < deadline, "the dask scheduler did not start"
            time.sleep(0.1)
        import json

        yield json.loads(info.read_text())["address"], info
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _worker(info: Path, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            _dask_cli(),
            "worker",
            "--scheduler-file",
            str(info),
            "--nthreads",
            "1",
            "--no-nanny",
            "--no-dashboard",
            "--name",
            name,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_real_workers_share_a_job_and_a_lost_worker_is_replaced(scheduler: tuple[str, Path]) -> None:
    address, info = scheduler
    workers = [_worker(info, "w1"), _worker(info, "w2")]
    try:
        url = "dask://" + address.removeprefix("tcp://")
        with DaskExecutor.from_url(url, chunk_size=5, chunks_per_thread=2) as executor:
            executor.client.wait_for_workers(2, timeout=60)
            got: dict[int, tuple[int, int, str]] = {}
            killed: int | None = None
            for task_id, result in executor.run(Program(delay_s=0.02), _tasks(list(range(200)))):
                assert task_id not in got  # each result exactly once, also across the re-run chunks
                got[task_id] = result
                if killed is None and len(got) >= 20:
                    killed = result[1]
                    os.kill(killed, signal.SIGKILL)  # a worker host lost mid-job
        assert sorted(got) == list(range(200))
        assert all(got[i][0] == 2 * i for i in range(200) if i != 13)
        pids = {result[1] for result in got.values() if result[0] >= 0}
        assert killed in pids and len(pids) == 2
        assert {w.pid for w in workers} >= pids
        late = [got[i][1] for i in range(150, 200) if i != 13]
        assert killed not in late  # the rest ran on the survivor
    finally:
        for w in workers:
            w.kill()
            w.wait(timeout=30)


def test_a_task_that_kills_every_worker_fails_alone(scheduler: tuple[str, Path]) -> None:
    address, info = scheduler
    # Nannies restart the killed workers, as in production.
    workers = [
        subprocess.Popen(
            [_dask_cli(), "worker", "--scheduler-file", str(info), "--nthreads", "1", "--no-dashboard"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        with DaskExecutor(address, chunk_size=4) as executor:
            executor.client.wait_for_workers(2, timeout=60)
            got = dict(executor.run(Program(poison=6), _tasks(list(range(12)))))
        assert sorted(got) == list(range(12))
        assert got[6][0] == -1 and got[6][2].startswith("crashed")
        assert [got[i][0] for i in range(12) if i not in (6,)] == [
            2 * i if i != 13 else -1 for i in range(12) if i != 6
        ]
    finally:
        for w in workers:
            w.terminate()
            w.wait(timeout=60)


# --- through the engine ----------------------------------------------------------------------------------


def _pairs_dataset(root: Path) -> Path:
    from faceprint.testing import make_face_png

    colours = [(200, 30, 30), (30, 30, 200), (30, 200, 30), (200, 200, 30), (30, 200, 200), (200, 30, 200)]
    root.mkdir()
    names = []
    for i, colour in enumerate(colours):
        for j, size in enumerate(((64, 64), (48, 40))):
            name = f"p{i}/{j}.png"
            (root / name).parent.mkdir(exist_ok=True)
            (root / name).write_bytes(make_face_png(colour, size_wh=size))
            names.append(name)
    (root / "broken.png").write_bytes(b"not a png")
    rows = [(a, b) for a in names for b in names if a < b][:40]
    rows += [("broken.png", names[0]), ("missing.png", names[1])]
    (root / "pairs.csv").write_text("".join(f"{a},{b}\n" for a, b in rows))
    return root


def _run_pairs(dataset: Path, out: Path, executor: Any) -> bytes:
    from faceprint.batch.pairs import PairsOptions, run_pairs_job
    from faceprint.testing import fake_pipeline_factory

    options = PairsOptions(quiet=True, details=True, workers=1 if executor == "local" else None, executor=executor)
    run_pairs_job([dataset], out, options=options, pipeline_factory=fake_pipeline_factory)
    return out.read_bytes()


def test_the_pairs_archive_is_byte_identical_to_a_local_run(tmp_path: Path, local_cluster: Any) -> None:
    dataset = _pairs_dataset(tmp_path / "dataset")
    local = _run_pairs(dataset, tmp_path / "local.tar.gz", "local")
    with DaskExecutor(client=local_cluster, chunk_size=3) as executor:
        remote = _run_pairs(dataset, tmp_path / "dask.tar.gz", executor)
    assert remote == local
    with tarfile.open(tmp_path / "dask.tar.gz") as tar:
        table = next(m for m in tar.getmembers() if m.name.endswith(".csv"))
        lines = tar.extractfile(table).read().decode().splitlines()  # type: ignore[union-attr]
    assert len(lines) == 43 and sum("True" in line or "true" in line for line in lines) >= 1


def test_real_workers_write_the_same_archive(tmp_path: Path, scheduler: tuple[str, Path]) -> None:
    address, info = scheduler
    workers = [_worker(info, "w1"), _worker(info, "w2")]
    try:
        dataset = _pairs_dataset(tmp_path / "dataset")
        local = _run_pairs(dataset, tmp_path / "local.tar.gz", "local")
        with DaskExecutor.from_url("dask://" + address.removeprefix("tcp://"), chunk_size=2) as executor:
            executor.client.wait_for_workers(2, timeout=60)
            remote = _run_pairs(dataset, tmp_path / "dask.tar.gz", executor)
        assert remote == local
    finally:
        for w in workers:
            w.kill()
            w.wait(timeout=30)
