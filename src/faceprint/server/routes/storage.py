"""``/api/v1/storage/``: upload a file (multipart field ``file``), read its record, download it, delete it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from faceprint.jobs.uploads import UploadTooLargeError
from faceprint.server.deps import ServiceDep
from faceprint.server.download import stream_response

router = APIRouter(prefix="/storage", tags=["storage"])


def check_length(request: Request, max_bytes: int) -> None:
    """Refuse before reading when the declared body is already larger than the limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
        raise UploadTooLargeError(
            f"upload larger than the limit of {max_bytes} bytes", details={"max_bytes": max_bytes}
        )


@router.post("/", status_code=201)
async def upload(
    request: Request,
    service: ServiceDep,
    file: Annotated[UploadFile, File(description="The image, video or dataset archive.")],
    sha256: Annotated[str | None, Form(description="The file's sha256; a mismatch is refused (422).")] = None,
) -> dict[str, Any]:
    """Store an upload; its ``uri`` (``storage://<id>``) is what jobs take as a source."""
    check_length(request, service.settings.max_upload_bytes)
    record = await run_in_threadpool(
        service.uploads.save,
        file.file,
        filename=file.filename,
        max_bytes=service.settings.max_upload_bytes,
        expected_sha256=sha256,
    )
    return record.to_dict()


@router.get("/{upload_id}")
def get_upload(upload_id: str, service: ServiceDep) -> dict[str, Any]:
    return service.uploads.get(upload_id).to_dict()


@router.get("/{upload_id}/file")
def download(upload_id: str, service: ServiceDep) -> StreamingResponse:
    record = service.uploads.get(upload_id)
    return stream_response(
        service.uploads.open(upload_id), filename=record.filename, media_type="application/octet-stream"
    )


@router.delete("/{upload_id}", status_code=204)
def delete_upload(upload_id: str, service: ServiceDep) -> None:
    service.uploads.delete(upload_id)
