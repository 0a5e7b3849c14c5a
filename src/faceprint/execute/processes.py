"""Run the engine's work in worker processes that outlive one call, survive crashes and die with their parent.

Why not :class:`concurrent.futures.ProcessPoolExecutor`: when one of its workers dies (killed for memory,
a segfault in a native library) every pending future fails with ``BrokenProcessPool`` and nobody knows
which item did it, so a 100,000-photo job was lost to one bad photo. Here each worker has its own pipe and
at most two tasks queued, the first of which is the one it is working on: when a worker dies, the task
it held is retried once on a fresh worker and, if that one dies too, becomes a ``worker_crashed`` result;
the job goes on.

Workers start by forking this process when that is safe (Linux, one thread, no ONNX Runtime loaded yet):
the modules this process imported come for free, which saves about half a second of imports per worker
on every command over many photos. Otherwise (a server with threads, macOS) they are spawned.

Workers die with their parent: each asks the kernel for SIGKILL when its parent exits (Linux
``PR_SET_PDEATHSIG``) and also leaves when its pipe to the parent closes, so ``kill -9`` of a command
leaves no 200 MB workers behind.

Example:
    >>> from faceprint.execute.processes import ProcessExecutor
    >>> ProcessExecutor(workers=2).slots    # two workers, two tasks queued on each
    4
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, Self, TypeVar

from faceprint.errors import FaceprintError, InputError, UsageError
from faceprint.execute.base import THREAD_ENV_VARS, CancelledError, WorkerProgram

__all__ = ["ProcessExecutor", "WorkerFailedError", "fork_is_safe"]

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

_QUEUED_PER_WORKER = 2
_MAX_ATTEMPTS = 2
_PR_SET_PDEATHSIG = 1


class WorkerFailedError(FaceprintError):
    """Worker processes cannot be started or keep dying before doing any work; the run stops."""

    code = "worker_failed"
    exit_code = 70


@dataclass(slots=True)
class _Worker:
    process: BaseProcess
    conn: Connection
    queue: deque[tuple[int, Any, int]] = field(default_factory=deque)
    """``(task_id, task, attempt)`` sent and not answered yet; the first is the one being worked on."""


class _Raise:
    """Sent back by a worker when the program raised an error that must stop the run (a model failure)."""

    def __init__(self, error: FaceprintError) -> None:
        self.error = error


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def fork_is_safe() -> bool:
    """Whether a worker may be forked from this process rather than spawned.

    Fork copies only the calling thread: a lock another thread held stays locked in the child for ever.
    So only from a process with one Python thread, and before ONNX Runtime is imported (it starts a
    native thread at import and pools with its sessions). numpy's BLAS threads are fork-aware.

    Example:
        >>> isinstance(fork_is_safe(), bool)
        True
    """
    return (
        sys.platform.startswith("linux")
        and threading.active_count() == 1
        and "onnxruntime" not in sys.modules
        and "fork" in multiprocessing.get_all_start_methods()
    )


def _worker_main(conn: Connection, program_blob: bytes, parent_pid: int, inherited_fds: tuple[int, ...] = ()) -> None:
    _die_with_parent()
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        return
    for fd in inherited_fds:  # a forked worker holds its siblings' pipes: close them, so EOF means what it says
        with contextlib.suppress(OSError):
            os.close(fd)
    for var in THREAD_ENV_VARS:
        os.environ[var] = "1"
    # Ctrl-C and SIGTERM go to the whole process group: the parent decides, instead of N tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    program = pickle.loads(program_blob)
    state: Any = None
    built = False
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone, or closed the pool
        if message is None:
            return
        task_id, task = message
        try:
            if not built:
                state = program.build()
                built = True
            result: Any = program.run(state, task)
        except InputError as err:
            result = program.failed(task, err.message, crashed=False)
        except FaceprintError as err:
            result = _Raise(err)
        except Exception as err:  # one odd item must not stop the others
            result = program.failed(task, f"{type(err).__name__}: {err}", crashed=False)
        try:
            conn.send((task_id, result))
        except (EOFError, OSError):
            return


class ProcessExecutor:
    """A pool of worker processes (forked or spawned), kept between calls, restarted when one dies.

    Args:
        workers: How many processes; each builds the program's state (its pipeline) once, on its first
            task, and keeps it while the executor lives.

    Raises:
        UsageError: ``workers`` below 1.
    """

    def __init__(self, *, workers: int) -> None:
        if workers < 1:
            raise UsageError(f"workers must be at least 1, got {workers}")
        self._size = workers
        self._workers: list[_Worker] = []
        self._program_blob: bytes | None = None
        self._lock = threading.Lock()
        self._spawn = multiprocessing.get_context("spawn")

    @property
    def slots(self) -> int:
        return self._size * _QUEUED_PER_WORKER

    @property
    def workers(self) -> int:
        return self._size

    def worker_pids(self) -> list[int]:
        """The live workers' process ids (for tests and for operators)."""
        return [w.process.pid for w in self._workers if w.process.pid is not None and w.process.is_alive()]

    # --- lifetime -----------------------------------------------------------------------------------------

    def _start_worker(self) -> _Worker:
        if self._program_blob is None:
            raise UsageError("no program to run")
        fork = fork_is_safe()
        context = multiprocessing.get_context("fork") if fork else self._spawn
        parent_conn, child_conn = context.Pipe(duplex=True)
        # Only a forked child holds copies of this process's descriptors (a spawned one gets its own).
        inherited: tuple[int, ...] = ()
        if fork:
            inherited = (*(w.conn.fileno() for w in self._workers if not w.conn.closed), parent_conn.fileno())
        process = context.Process(
            target=_worker_main, args=(child_conn, self._program_blob, os.getpid(), inherited), daemon=True
        )
        process.start()
        child_conn.close()
        return _Worker(process=process, conn=parent_conn)

    def _ensure_workers(self, program: WorkerProgram[Any, Any, Any]) -> None:
        try:
            blob = pickle.dumps(program)
        except (pickle.PicklingError, AttributeError, TypeError) as err:
            raise UsageError(f"the work cannot be sent to worker processes ({err}); use one worker") from err
        if blob != self._program_blob:
            self._stop_workers()
            self._program_blob = blob
        while len(self._workers) < self._size:
            self._workers.append(self._start_worker())

    def _stop_workers(self) -> None:
        for worker in self._workers:
            with contextlib.suppress(OSError, EOFError, BrokenPipeError):
                worker.conn.send(None)
        for worker in self._workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
            worker.conn.close()
        self._workers = []

    def close(self) -> None:
        with self._lock:
            self._stop_workers()
            self._program_blob = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # --- work ---------------------------------------------------------------------------------------------

    def run(
        self,
        program: WorkerProgram[S, T, R],
        tasks: Iterator[tuple[int, T]],
        *,
        cancel: threading.Event | None = None,
    ) -> Iterator[tuple[int, R]]:
        with self._lock:  # one run at a time uses the workers; other callers wait for their turn
            yield from self._run(program, tasks, cancel)

    def _run(
        self, program: WorkerProgram[S, T, R], tasks: Iterator[tuple[int, T]], cancel: threading.Event | None
    ) -> Iterator[tuple[int, R]]:
        self._ensure_workers(program)
        retry: deque[tuple[int, T, int]] = deque()
        exhausted = False
        deaths_without_progress = 0
        try:
            while True:
                cancelled = cancel is not None and cancel.is_set()
                if not cancelled:
                    # Fill the queues: retried tasks first, to an idle worker (so a crash is attributed).
                    for worker in self._workers:
                        while len(worker.queue) < _QUEUED_PER_WORKER:
                            if retry and not worker.queue:
                                entry = retry.popleft()
                            elif retry or exhausted:
                                break
                            else:
                                next_task = next(tasks, None)
                                if next_task is None:
                                    exhausted = True
                                    break
                                entry = (next_task[0], next_task[1], 1)
                            worker.queue.append(entry)
                            try:
                                worker.conn.send((entry[0], entry[1]))
                            except (OSError, EOFError):
                                break  # it died: the wait below sees its sentinel and requeues the entry
                busy = [w for w in self._workers if w.queue]
                if not busy:
                    if cancelled:
                        raise CancelledError("cancelled")
                    if exhausted and not retry:
                        return
                    continue
                waitables: list[Any] = []
                for worker in busy:
                    waitables += [worker.conn, worker.process.sentinel]
                ready = set(wait(waitables, timeout=0.5))
                for worker in busy:
                    if worker.conn in ready:
                        try:
                            task_id, result = worker.conn.recv()
                        except (EOFError, OSError):
                            result = None
                            task_id = None
                        if task_id is not None:
                            worker.queue.popleft()
                            deaths_without_progress = 0
                            if isinstance(result, _Raise):
                                raise result.error
                            yield task_id, result
                            continue
                    if worker.process.sentinel in ready or not worker.process.is_alive():
                        yield from self._replace_dead(worker, program, retry)
                        deaths_without_progress += 1
                        if deaths_without_progress > 4 * self._size + 4:
                            raise WorkerFailedError(
                                "worker processes keep dying before finishing any photo "
                                "(out of memory?); try --workers 1"
                            )
        finally:
            # A consumer that stops early (or an error) leaves tasks queued in the workers: drop the
            # workers rather than read stale results into the next run.
            if any(w.queue for w in self._workers):
                self._stop_workers()

    def _replace_dead(
        self, worker: _Worker, program: WorkerProgram[S, T, R], retry: deque[tuple[int, T, int]]
    ) -> Iterator[tuple[int, R]]:
        worker.process.join(timeout=1)
        worker.conn.close()
        pending = list(worker.queue)
        worker.queue.clear()
        if pending:
            task_id, task, attempt = pending[0]
            if attempt >= _MAX_ATTEMPTS:
                code = worker.process.exitcode
                how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                yield task_id, program.failed(task, f"the worker process died on it twice ({how})", crashed=True)
            else:
                retry.append((task_id, task, attempt + 1))
            # Tasks only queued behind it were not started: they go again without counting an attempt.
            retry.extend(pending[1:])
        index = self._workers.index(worker)
        self._workers[index] = self._start_worker()
