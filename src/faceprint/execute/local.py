"""Run the engine's work in the calling thread: no processes, one state per program, thread-safe."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self, TypeVar

from faceprint.errors import FaceprintError, InputError
from faceprint.execute.base import CancelledError, WorkerProgram

__all__ = ["LocalExecutor"]

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")


class LocalExecutor:
    """Runs tasks one at a time in the caller's thread; the program's state is built once and kept.

    Several threads may call :meth:`run` at once: a lock serialises them, because the state (a model
    pipeline holding dlib objects) is not thread-safe.

    Example:
        >>> with LocalExecutor() as executor:
        ...     executor.slots
        1
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._program: object = None
        self._state: Any = None

    @property
    def slots(self) -> int:
        return 1

    def _state_for(self, program: WorkerProgram[S, T, R]) -> S:
        # One state at a time: an equal program (same factory and settings) reuses the built pipeline.
        if self._program is None or self._program != program:
            self._state = program.build()
            self._program = program
        state: S = self._state
        return state

    def run(
        self,
        program: WorkerProgram[S, T, R],
        tasks: Iterator[tuple[int, T]],
        *,
        cancel: threading.Event | None = None,
    ) -> Iterator[tuple[int, R]]:
        for task_id, task in tasks:
            if cancel is not None and cancel.is_set():
                raise CancelledError("cancelled")
            with self._lock:
                state = self._state_for(program)
                try:
                    result = program.run(state, task)
                except InputError as err:
                    result = program.failed(task, err.message, crashed=False)
                except FaceprintError:
                    raise
                except Exception as err:  # a native failure on one odd item must not stop the others
                    result = program.failed(task, f"{type(err).__name__}: {err}", crashed=False)
            yield task_id, result

    def close(self) -> None:
        with self._lock:
            self._program = None
            self._state = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
