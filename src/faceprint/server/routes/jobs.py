"""``/api/v1/jobs/``: create (queued for the workers), read, list, cancel, detailed results, result file."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, StreamingResponse

from faceprint.errors import UsageError
from faceprint.gallery.base import GalleryNotFoundError
from faceprint.jobs.context import result_context
from faceprint.jobs.model import JobState, JobStateError, NewJob
from faceprint.jobs.retention import release_job_uploads
from faceprint.jobs.uploads import InvalidSourceError, parse_storage_uri
from faceprint.server.deps import ServiceDep, base_url
from faceprint.server.download import file_response
from faceprint.server.fetch import fetch_url
from faceprint.server.schemas import JobCreate, item_to_dict, job_to_dict, page_to_dict

router = APIRouter(prefix="/jobs", tags=["jobs"])

Limit = Annotated[int, Query(ge=1, le=1000, description="Rows per page (default 10, at most 1000).")]
Offset = Annotated[int, Query(ge=0)]


class TooManySourcesError(UsageError):
    code = "too_many_sources"
    http_status = 422


def _media_type(types: list[str]) -> str:
    distinct = sorted(set(types))
    return distinct[0] if len(distinct) == 1 else "mixed"


@router.post("/", status_code=201)
def create_job(body: JobCreate, request: Request, service: ServiceDep) -> dict[str, Any]:
    """Queue a job; a worker runs it (never this request)."""
    limits = service.settings.limits
    if len(body.sources) > limits.max_sources:
        raise TooManySourcesError(
            f"sources: {len(body.sources)} given, at most {limits.max_sources}",
            details={"field": "sources", "max_sources": limits.max_sources},
        )
    types: list[str] = []
    sources: list[str] = []
    allowed = service.settings.allowed_url_hosts
    for index, uri in enumerate(body.sources):
        if allowed and uri.startswith(("http://", "https://")):
            record = fetch_url(
                uri, allowed_hosts=allowed, uploads=service.uploads, max_bytes=service.settings.max_upload_bytes
            )
            uri = record.uri
        try:
            types.append(service.uploads.get(parse_storage_uri(uri)).media_type)
        except InvalidSourceError as err:
            raise InvalidSourceError(f"sources.{index}: {err.message}", details={"field": f"sources.{index}"}) from None
        sources.append(uri)
    kind = body.modules.kind
    if kind == "face_pairs" and any(t != "archive" for t in types):
        raise InvalidSourceError(
            "face_pairs sources must be dataset archives (TAR or TAR.GZ)", details={"field": "sources"}
        )
    if body.modules.face_recognition is not None:
        params = body.modules.face_recognition
        for name in [*([params.model] if params.model is not None else []), *(params.models or [])]:
            if not (service.layout.gallery_dir / f"{name}.sqlite").is_file() or "/" in name or name.startswith("."):
                raise GalleryNotFoundError(
                    f"no model (gallery) {name!r}", details={"field": "modules.face_recognition"}
                )
    job = service.store.create(
        NewJob(kind, tuple(sources), body.modules.params(), tag=body.tag, media_type=_media_type(types)),
        max_attempts=service.settings.max_attempts,
    )
    return job_to_dict(job, base_url=base_url(request), now_s=time.time())


@router.get("/")
def list_jobs(
    request: Request,
    service: ServiceDep,
    state: JobState | None = None,
    tag: str | None = None,
    limit: Limit = 10,
    offset: Offset = 0,
) -> dict[str, Any]:
    page = service.store.list_jobs(state=state, tag=tag, offset=offset, limit=limit)
    now = time.time()
    extra = {k: v for k, v in (("state", None if state is None else state.value), ("tag", tag)) if v is not None}
    return page_to_dict(
        page,
        url=f"{base_url(request)}/api/v1/jobs/",
        data=[job_to_dict(job, base_url=base_url(request), now_s=now) for job in page.rows],
        extra=extra,
    )


@router.get("/{job_id}/")
@router.get("/{job_id}", include_in_schema=False)
def get_job(job_id: str, request: Request, service: ServiceDep) -> dict[str, Any]:
    return job_to_dict(service.store.get(job_id), base_url=base_url(request), now_s=time.time())


@router.delete("/{job_id}")
@router.delete("/{job_id}/", include_in_schema=False)
def cancel_job(job_id: str, request: Request, service: ServiceDep) -> dict[str, Any]:
    """Cancel: a waiting job at once, a running one within seconds (its worker stops it)."""
    job = service.store.request_cancel(job_id)
    if service.settings.confidential:
        # A waiting job never reaches a worker: its uploads go now (a running one's worker releases them).
        release_job_uploads(job, service.store, service.uploads)
    return job_to_dict(job, base_url=base_url(request), now_s=time.time())


@router.get("/{job_id}/detailed-results/")
@router.get("/{job_id}/detailed-results", include_in_schema=False)
def detailed_results(
    job_id: str, request: Request, service: ServiceDep, limit: Limit = 10, offset: Offset = 0
) -> dict[str, Any]:
    """One page of the job's results (read from the store): faces of images, segments of videos."""
    page = service.store.items(job_id, offset=offset, limit=limit)
    return page_to_dict(
        page,
        url=f"{base_url(request)}/api/v1/jobs/{job_id}/detailed-results/",
        data=[item_to_dict(item) for item in page.rows],
    )


@router.get("/{job_id}/result", response_model=None)
def job_result(job_id: str, service: ServiceDep) -> FileResponse | StreamingResponse:
    """The face_pairs job's TAR.GZ (the bytes ``faceprint pairs`` writes for the same datasets)."""
    job = service.store.get(job_id)
    if job.state is not JobState.COMPLETED or job.result_path is None:
        raise JobStateError(
            f"job {job_id} has no result file (state {job.state.value}, kind {job.kind})",
            details={"state": job.state.value},
        )
    return file_response(
        service.layout.root / job.result_path,
        cipher=service.cipher,
        context=result_context(job_id),
        media_type="application/gzip",
        filename=f"{job_id}.tar.gz",
    )
