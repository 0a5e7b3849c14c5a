"""Request and response shapes, in DeepVA's names wherever DeepVA has them.

``face_recognition`` keeps DeepVA's parameter names, defaults and ranges, with one deliberate difference:
``max_distance`` defaults to the model's own identification cut-off rather than DeepVA's 1.0 (a distance
of 1.0 between unit faceprints of dlib's model would accept almost anyone). Unknown parameters are
refused (422, naming the field) rather than silently ignored.

Example:
    >>> params = FaceRecognitionParams(model="staff", enable_top_k=True)
    >>> params.face_detection_scale, params.top_k, params.max_distance
    (600, 3, None)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from faceprint.jobs.model import Job, JobItem, Page

__all__ = [
    "CompareRequest",
    "DetectRequest",
    "EnrollRequest",
    "FacePairsParams",
    "FaceRecognitionParams",
    "GalleryCreate",
    "JobCreate",
    "MergeRequest",
    "Modules",
    "RenameRequest",
    "iso_time",
    "item_to_dict",
    "job_to_dict",
    "page_to_dict",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FaceRecognitionParams(_Strict):
    """DeepVA's ``face_recognition`` module parameters."""

    model: str | None = Field(default=None, max_length=100, description="A gallery, by id or name.")
    models: list[str] | None = Field(default=None, max_length=50, description="Several galleries.")
    max_distance: float | None = Field(
        default=None,
        ge=0.0,
        le=2.0,
        description="Euclidean distance cut-off between unit faceprints (default: model's).",
    )
    cluster_unknowns: bool = False
    index_unknowns: bool = False
    face_detection_scale: int = Field(default=600, ge=100, le=2000)
    enable_top_k: bool = False
    top_k: int = Field(default=3, ge=1, le=10)
    thumbnails: bool | None = Field(
        default=None,
        description="A face thumbnail (JPEG) per video segment; default on, off in confidential mode.",
    )


class FacePairsParams(_Strict):
    """The python-face batch job: ``faceprint pairs`` options."""

    details: bool = False
    face: Literal["primary", "largest", "best-match"] = "primary"


class Modules(_Strict):
    face_recognition: FaceRecognitionParams | None = None
    face_pairs: FacePairsParams | None = None

    @model_validator(mode="after")
    def _one(self) -> Modules:
        given = [name for name in ("face_recognition", "face_pairs") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one module: face_recognition or face_pairs")
        return self

    @property
    def kind(self) -> str:
        return "face_recognition" if self.face_recognition is not None else "face_pairs"

    def params(self) -> dict[str, Any]:
        chosen = self.face_recognition if self.face_recognition is not None else self.face_pairs
        return {} if chosen is None else chosen.model_dump()


class JobCreate(_Strict):
    """``POST /api/v1/jobs/``: sources are ``storage://`` URIs from ``POST /api/v1/storage/``."""

    sources: list[str] = Field(min_length=1)
    modules: Modules
    tag: str = Field(default="", max_length=200)


class GalleryCreate(_Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class EnrollRequest(_Strict):
    name: str = Field(min_length=1, max_length=200)
    sources: list[str] = Field(min_length=1, max_length=100)


class RenameRequest(_Strict):
    name: str = Field(min_length=1, max_length=200)


class MergeRequest(_Strict):
    into: str = Field(min_length=1)
    sources: list[str] = Field(min_length=1, description="Person ids merged into `into`.")


class CompareRequest(_Strict):
    a: str
    b: str
    face: Literal["primary", "largest", "best-match"] = "primary"


class DetectRequest(_Strict):
    source: str
    face: Literal["primary", "largest", "all"] = "all"


def iso_time(seconds: float | None) -> str | None:
    """An ISO 8601 UTC time string.

    Example:
        >>> iso_time(0.5)
        '1970-01-01T00:00:00.500000+00:00'
    """
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="microseconds")


def job_to_dict(job: Job, *, base_url: str, now_s: float) -> dict[str, Any]:
    """DeepVA's job object."""
    link = f"{base_url}/api/v1/jobs/{job.id}"
    result: dict[str, Any] = {"detailed_link": f"{link}/detailed-results/", "summary": list(job.summary)}
    if job.kind == "face_pairs":
        result["download_link"] = f"{link}/result" if job.result_path is not None else None
    return {
        "id": job.id,
        "tag": job.tag,
        "state": job.state.value,
        "errors": [e.to_dict() for e in job.errors],
        "progress": round(job.progress, 4),
        "duration": round(job.duration_s(now_s), 3),
        "time_created": iso_time(job.time_created_s),
        "time_started": iso_time(job.time_started_s),
        "time_completed": iso_time(job.time_completed_s),
        "sources": list(job.sources),
        "modules": {job.kind: {**job.params, "state": job.state.value, "progress": round(job.progress, 4)}},
        "media_type": job.media_type,
        "result": result,
        "attempts": job.attempts,
    }


def _link(url: str, offset: int, limit: int, extra: dict[str, str]) -> str:
    query = "&".join([f"limit={limit}", f"offset={offset}", *(f"{k}={v}" for k, v in extra.items())])
    return f"{url}?{query}"


def page_to_dict(
    page: Page[Any], *, url: str, data: list[dict[str, Any]], extra: dict[str, str] | None = None
) -> dict[str, Any]:
    """DeepVA's pagination object: ``{total, offset, limit, next, prev, data}``."""
    extra = extra if extra is not None else {}
    after = page.offset + page.limit
    return {
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
        "next": _link(url, after, page.limit, extra) if after < page.total else None,
        "prev": _link(url, max(0, page.offset - page.limit), page.limit, extra) if page.offset > 0 else None,
        "data": data,
    }


def item_to_dict(item: JobItem) -> dict[str, Any]:
    return dict(item.data)
