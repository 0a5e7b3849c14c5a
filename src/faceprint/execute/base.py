"""The executor seam: where the engine's per-item work runs (this process, a process pool, later a cluster).

An executor runs a *worker program* over tasks. The program is a picklable object that knows how to build
its per-worker state once (the model pipeline) and how to turn one task into one result; the executor
knows nothing about faces. Results stream back as they complete, tagged with the task id the caller gave,
so the caller (:class:`faceprint.analyze.Analyzer`) restores input order, dedupes and reports progress.

Example:
    >>> from faceprint.execute.local import LocalExecutor
    >>> class Double:
    ...     def build(self) -> int: return 2
    ...     def run(self, state: int, task: int) -> int: return state * task
    ...     def failed(self, task: int, message: str, *, crashed: bool) -> int: return -1
    >>> with LocalExecutor() as executor:
    ...     sorted(executor.run(Double(), iter([(0, 5), (1, 7)])))
    [(0, 10), (1, 14)]
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Protocol, Self, TypeVar

from faceprint.errors import FaceprintError

__all__ = [
    "THREAD_ENV_VARS",
    "CancelledError",
    "Executor",
    "WorkerProgram",
    "available_cores",
]

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")
T_contra = TypeVar("T_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
"""Native thread pools read these when they start: a pool worker sets them to 1 so N workers use N cores."""


class CancelledError(FaceprintError):
    """The caller cancelled the work (a job was cancelled, or Ctrl-C); results so far were streamed."""

    code = "cancelled"
    exit_code = 130


class WorkerProgram(Protocol[S, T_contra, R_co]):
    """What an executor runs: build the state once per worker, then one result per task.

    ``run`` turns per-item problems into results itself; an exception it raises is either a
    :class:`~faceprint.errors.FaceprintError` that must stop the whole run (a model failure), or an
    unexpected one that ``failed`` turns into that item's result. ``failed(..., crashed=True)`` is the
    result of a task whose worker process died on it twice.
    """

    def build(self) -> S: ...

    def run(self, state: S, task: T_contra) -> R_co: ...

    def failed(self, task: T_contra, message: str, *, crashed: bool) -> R_co: ...


class Executor(Protocol):
    """Runs a :class:`WorkerProgram` over ``(task_id, task)`` pairs, yielding ``(task_id, result)`` as completed.

    Implementations keep their workers between calls (the pool outlives one job) and are used as context
    managers; ``slots`` is how many tasks they want in flight at once (the caller bounds memory with it).
    A ``cancel`` event stops sending new tasks; tasks already running finish and are yielded, then
    :class:`CancelledError` is raised.
    """

    @property
    def slots(self) -> int: ...

    def run(
        self,
        program: WorkerProgram[S, T, R],
        tasks: Iterator[tuple[int, T]],
        *,
        cancel: threading.Event | None = None,
    ) -> Iterator[tuple[int, R]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None: ...


def available_cores() -> int:
    """CPU cores this process may run on (respects affinity / container limits where the OS tells).

    Example:
        >>> available_cores() >= 1
        True
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
