"""One JSON error body for every failure: ``{"error": {"code", "message", "details"}, "request_id"}``.

The HTTP status and code come from the one error tree (:class:`~faceprint.errors.FaceprintError`'s
``http_status`` and ``code``); request validation is 422 ``invalid_request`` naming the field; routing
errors keep their status; anything unexpected is 500 ``internal_error`` without a traceback.

Example:
    >>> error_body("no_face", "a.jpg: no face found", {}, "r-1")["error"]["code"]
    'no_face'
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from faceprint.errors import FaceprintError

__all__ = ["error_body", "install_error_handlers", "request_id"]

_log = logging.getLogger("faceprint.server")
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media",
    422: "invalid_request",
}


def error_body(code: str, message: str, details: dict[str, Any] | None, request_id: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}, "request_id": request_id}


def request_id(request: Request) -> str:
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else "-"


def _json(status: int, code: str, message: str, details: dict[str, Any] | None, request: Request) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Key realm="faceprint"'} if status == 401 else None
    return JSONResponse(error_body(code, message, details, request_id(request)), status_code=status, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) if parts else "body"


def install_error_handlers(app: FastAPI) -> None:
    """Request ids (``X-Request-ID``) and the handlers that turn every error into the one body."""

    @app.middleware("http")
    async def _request_id(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        incoming = request.headers.get("x-request-id")
        rid = incoming[:64] if incoming and incoming.isprintable() else uuid.uuid4().hex
        request.state.request_id = rid
        try:
            response = await call_next(request)
        except Exception:
            _log.exception("request %s failed", rid)
            response = _json(500, "internal_error", "internal server error", {}, request)
        response.headers["X-Request-ID"] = rid
        return response

    @app.exception_handler(FaceprintError)
    async def _faceprint(request: Request, exc: FaceprintError) -> JSONResponse:
        return _json(exc.http_status, exc.code, exc.message, dict(exc.details), request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"field": _field(e.get("loc", ())), "message": str(e.get("msg", ""))} for e in exc.errors()]
        first = problems[0] if problems else {"field": "body", "message": "invalid request"}
        return _json(422, "invalid_request", f"{first['field']}: {first['message']}", {"errors": problems}, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return _json(exc.status_code, code, str(exc.detail), {}, request)
