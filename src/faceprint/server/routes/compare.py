"""``POST /api/v1/compare``: are two photos the same person? (two storage URIs as JSON, or two files ``a``, ``b``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from faceprint.errors import UsageError
from faceprint.jobs.uploads import parse_storage_uri
from faceprint.server.deps import ServiceDep
from faceprint.server.routes.storage import check_length
from faceprint.server.schemas import CompareRequest, DetectRequest
from faceprint.server.service import Service
from faceprint.verify import compare_inputs

router = APIRouter(tags=["compare"])

_BODY = {
    "content": {
        "application/json": {"schema": CompareRequest.model_json_schema()},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "a": {"type": "string", "format": "binary"},
                    "b": {"type": "string", "format": "binary"},
                },
                "required": ["a", "b"],
            }
        },
    }
}


async def _sources(
    request: Request, service: Service, names: tuple[str, ...], temporary: list[str], names_by_uri: dict[str, str]
) -> tuple[dict[str, Any], list[bytes]]:
    """The JSON body and the files it names: files sent in the form are stored first (checked, limited) and
    their ids added to ``temporary`` (the caller deletes them). The photos are read into memory (decrypted
    there when uploads are sealed)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        check_length(request, service.settings.max_upload_bytes)
        form = await request.form()
        body: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
        paths = []
        for name in names:
            upload = form.get(name)
            if not isinstance(upload, UploadFile):
                raise UsageError(f"{name}: a file is required", details={"field": name})
            record = await run_in_threadpool(
                service.uploads.save,
                upload.file,
                filename=upload.filename,
                max_bytes=service.settings.max_upload_bytes,
            )
            temporary.append(record.id)
            names_by_uri[record.uri] = record.filename
            body[name] = record.uri
            paths.append(await run_in_threadpool(service.uploads.read_bytes, record.id))
        return body, paths
    try:
        body = await request.json()
    except ValueError:
        raise UsageError("send JSON with storage URIs, or multipart files") from None
    if not isinstance(body, dict):
        raise UsageError("the JSON body must be an object")
    paths = [service.uploads.read_bytes(parse_storage_uri(str(body.get(name, "")))) for name in names]
    return body, paths


def _validated(model: type[CompareRequest] | type[DetectRequest], body: dict[str, Any]) -> Any:
    from fastapi.exceptions import RequestValidationError
    from pydantic import ValidationError

    try:
        return model.model_validate(body)
    except ValidationError as err:
        raise RequestValidationError(err.errors()) from None


@router.post("/compare", openapi_extra={"requestBody": _BODY})
async def compare(request: Request, service: ServiceDep) -> dict[str, Any]:
    """Probability (calibrated), similarity, match and threshold for the two photos' faces."""
    temporary: list[str] = []
    shown: dict[str, str] = {}
    try:
        body, (a, b) = await _sources(request, service, ("a", "b"), temporary, shown)
        params: CompareRequest = _validated(CompareRequest, body)
        result = await run_in_threadpool(compare_inputs, service.analyzer, a, b, face=params.face)
    finally:
        _forget(service, temporary)
    # A file sent with the call is named by its file name (it is not kept, so it has no URI).
    return {"a": shown.get(params.a, params.a), "b": shown.get(params.b, params.b), **result.to_dict()}


def _forget(service: Service, upload_ids: list[str]) -> None:
    """Files sent with a synchronous call are not kept."""
    for upload_id in upload_ids:
        service.uploads.delete(upload_id)


@router.post("/detect")
async def detect(request: Request, service: ServiceDep) -> dict[str, Any]:
    """Faces of one photo (``source`` URI, or a ``file``): boxes in pixels and 0-1, landmarks, quality."""
    from faceprint.analyze import AnalyzeItem, AnalyzeOptions

    content_type = request.headers.get("content-type", "")
    names = ("file",) if content_type.startswith("multipart/form-data") else ("source",)
    temporary: list[str] = []
    shown: dict[str, str] = {}

    def run(params: DetectRequest, path: bytes) -> dict[str, Any]:
        options = AnalyzeOptions(face=params.face, embed=False)
        (result,) = list(service.analyzer.analyze([AnalyzeItem(params.source, path)], options=options))
        if not result.ok:
            from faceprint.errors import error_for_code

            raise error_for_code(str(result.error_code), str(result.error_message))
        return {
            "source": shown.get(params.source, params.source),
            "size_wh": list(result.size_wh or ()),
            "faces": [face.to_dict(result.size_wh) for face in result.faces],
            "model_id": service.analyzer.spec.id,
        }

    try:
        body, (path,) = await _sources(request, service, names, temporary, shown)
        if "file" in body:
            body["source"] = body.pop("file")
        params: DetectRequest = _validated(DetectRequest, body)
        return await run_in_threadpool(run, params, path)
    finally:
        _forget(service, temporary)
