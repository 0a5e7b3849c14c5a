"""What a job runner gets from its worker, and what it gives back.

Example:
    >>> JobOutcome(summary=({"source": "storage://x"},)).errors
    ()
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from faceprint.analyze import Analyzer, PipelineFactory
from faceprint.jobs.layout import DataLayout
from faceprint.jobs.model import Job, JobError, JobItem
from faceprint.jobs.store import JobStore
from faceprint.jobs.uploads import UploadStore

if TYPE_CHECKING:
    from faceprint.crypto import RecordCipher

__all__ = ["JobContext", "JobLimits", "JobOutcome", "ProgressCell", "result_context"]


@dataclass(frozen=True, slots=True)
class JobLimits:
    """Limits a job's inputs must keep (the server checks what it can before queueing)."""

    max_sources: int = 100
    max_pairs: int = 1_000_000
    """Rows one ``pairs.csv`` may have."""
    max_video_side_px: int = 8192
    max_video_pixels: int = 40_000_000
    max_video_duration_s: float = 4 * 3600.0


class ProgressCell:
    """The running job's progress (0-1), written by the runner, read by the heartbeat thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0.0

    def set(self, value: float) -> None:
        with self._lock:
            self._value = max(self._value, min(max(value, 0.0), 1.0))

    def get(self) -> float:
        with self._lock:
            return self._value


@dataclass(frozen=True, slots=True, eq=False)
class JobContext:
    """Everything a runner may use; it must stop soon after ``cancel`` is set."""

    job: Job
    worker_id: str
    store: JobStore
    layout: DataLayout
    uploads: UploadStore
    analyzer: Analyzer
    cancel: threading.Event
    progress: ProgressCell
    limits: JobLimits = field(default_factory=JobLimits)
    pipeline_factory: PipelineFactory | None = None
    pipeline_factory_ref: str | None = None
    """``module:function`` of ``pipeline_factory``, for child processes (None: the real pipeline)."""
    engine_workers: int = 1
    video_engine: Callable[[], Analyzer] | None = None
    """The engine configured for video (no detector fallbacks), built on first use; None: ``analyzer``."""
    cipher: RecordCipher | None = None
    """Seals results (and opens galleries) at rest; None: no encryption key configured."""
    confidential: bool = False
    """Confidential mode (docs/privacy.md): no thumbnails unless asked, no face data in logs."""

    def video_analyzer(self) -> Analyzer:
        return self.analyzer if self.video_engine is None else self.video_engine()

    def put_items(self, items: Iterable[JobItem], *, done_units: Sequence[str] = ()) -> None:
        self.store.put_items(self.job.id, self.worker_id, items, done_units=done_units)

    def done_units(self) -> frozenset[str]:
        return self.store.done_units(self.job.id)


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """How a job ended: its summary entries, errors (per source, the job still completed), a result file."""

    summary: tuple[dict[str, Any], ...] = ()
    errors: tuple[JobError, ...] = ()
    result_path: str | None = None


Runner = Callable[[JobContext], JobOutcome]


def result_context(job_id: str) -> str:
    """Where a job's sealed result archive is bound (so a result moved to another job fails to open).

    Example:
        >>> result_context("ab12")
        'jobs/ab12/result'
    """
    return f"jobs/{job_id}/result"
