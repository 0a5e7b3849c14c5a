"""What a job is: its kind, its state, its lease, and its per-item results.

A job is created ``waiting``; a worker claims it (``running``, with a lease it renews by heartbeats); it
ends ``completed``, ``failed`` or ``cancelled``. A job whose worker dies is claimed again once its lease
expires, until it has been tried ``max_attempts`` times; then it fails with :class:`JobAttemptsExhaustedError`.

Example:
    >>> JobState("waiting").is_final
    False
    >>> JobState.COMPLETED.is_final
    True
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from faceprint.errors import FaceprintError, InputError, UsageError

__all__ = [
    "JOB_KINDS",
    "Job",
    "JobAttemptsExhaustedError",
    "JobError",
    "JobItem",
    "JobKind",
    "JobNotFoundError",
    "JobState",
    "JobStateError",
    "LeaseLostError",
    "NewJob",
    "Page",
]


class JobState(enum.StrEnum):
    """DeepVA's job states."""

    WAITING = "waiting"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


JobKind = str
JOB_KINDS: tuple[JobKind, ...] = ("face_recognition", "face_pairs")
"""``face_recognition``: images (and videos) identified against galleries; ``face_pairs``: pair datasets."""


class JobNotFoundError(InputError):
    """No job with this id."""

    code = "job_not_found"
    http_status = 404


class JobAttemptsExhaustedError(FaceprintError):
    """The job's worker died (killed or crashed) on every one of its attempts."""

    code = "job_attempts_exhausted"
    http_status = 500


class LeaseLostError(FaceprintError):
    """This worker's lease on the job expired and another worker may hold it: stop without writing."""

    code = "lease_lost"
    http_status = 409


class JobStateError(UsageError):
    """The job is not in a state that allows this (e.g. reading the result of a job still running)."""

    code = "job_state_conflict"
    http_status = 409


@dataclass(frozen=True, slots=True)
class JobError:
    """One error of a job (DeepVA's ``errors`` entries are strings; ours carry the code too)."""

    code: str
    message: str
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "source": self.source}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobError:
        return cls(code=str(data["code"]), message=str(data["message"]), source=data.get("source"))


@dataclass(frozen=True, slots=True)
class NewJob:
    """What a client asks for: sources (storage URIs), one module with its parameters, a tag."""

    kind: JobKind
    sources: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)
    tag: str = ""
    media_type: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in JOB_KINDS:
            raise UsageError(f"job kind must be one of {', '.join(JOB_KINDS)}, not {self.kind!r}")
        if not self.sources:
            raise UsageError("a job needs at least one source")


@dataclass(frozen=True, slots=True)
class Job:
    """A job as the store holds it. Times are seconds since the epoch (UTC)."""

    id: str
    kind: JobKind
    state: JobState
    sources: tuple[str, ...]
    params: dict[str, Any]
    tag: str
    media_type: str | None
    progress: float
    """0-1, never going backwards."""
    errors: tuple[JobError, ...]
    summary: tuple[dict[str, Any], ...]
    result_path: str | None
    """A file the job produced (the pairs job's TAR.GZ), relative to the data dir."""
    attempts: int
    max_attempts: int
    cancel_requested: bool
    time_created_s: float
    time_started_s: float | None
    time_completed_s: float | None
    lease_owner: str | None = None
    lease_expires_s: float | None = None

    def duration_s(self, now_s: float) -> float:
        """Seconds from start to completion (or to now while running); 0 before it starts."""
        if self.time_started_s is None:
            return 0.0
        end = self.time_completed_s if self.time_completed_s is not None else now_s
        return max(0.0, end - self.time_started_s)


@dataclass(frozen=True, slots=True)
class JobItem:
    """One detailed result of a job (a face in an image, a video segment), keyed so a retry overwrites it."""

    key: str
    position: int
    """Where it goes in the paginated results (sources in order, then faces)."""
    data: dict[str, Any]


RowT = TypeVar("RowT")


@dataclass(frozen=True, slots=True)
class Page(Generic[RowT]):
    """A page of a listing: ``total`` matching rows, ``rows`` from ``offset``."""

    total: int
    offset: int
    limit: int
    rows: tuple[RowT, ...]
