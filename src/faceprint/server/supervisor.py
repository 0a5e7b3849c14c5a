"""Worker processes for ``faceprint serve``: started with the server, restarted when one dies, stopped with it.

A worker that dies mid-job (SIGKILL, out of memory) loses nothing: its job's lease expires and a worker
(this restarted one, or another) claims it again.

Example:
    >>> worker_command(Path("/srv/fp"))[-3:]
    ['worker', '--data-dir', '/srv/fp']
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

__all__ = ["WorkerSupervisor", "worker_command"]

_log = logging.getLogger("faceprint.serve")


def worker_command(data_dir: Path) -> list[str]:
    """``faceprint worker --data-dir DIR`` with this interpreter."""
    return [sys.executable, "-c", "from faceprint.cli.main import run; run()", "worker", "--data-dir", str(data_dir)]


class WorkerSupervisor:
    """Keeps ``count`` worker processes running until :meth:`stop`."""

    def __init__(self, data_dir: Path, count: int, *, restart_delay_s: float = 1.0) -> None:
        self._data_dir = data_dir
        self._count = count
        self._delay_s = restart_delay_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._processes: list[subprocess.Popen[bytes]] = []
        self._thread: threading.Thread | None = None

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p in self._processes if p.poll() is None]

    def start(self) -> None:
        with self._lock:
            self._processes = [self._spawn() for _ in range(self._count)]
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(worker_command(self._data_dir))

    def _watch(self) -> None:
        while not self._stop.wait(self._delay_s):
            with self._lock:
                for index, process in enumerate(self._processes):
                    if process.poll() is not None and not self._stop.is_set():
                        _log.warning("worker %s exited with %s; starting another", process.pid, process.returncode)
                        self._processes[index] = self._spawn()

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """SIGTERM every worker (a running job is re-leased later), then SIGKILL those still alive."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            for process in self._processes:
                if process.poll() is None:
                    process.terminate()
            for process in self._processes:
                try:
                    process.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
