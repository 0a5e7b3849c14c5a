"""``GET /health``: no key needed; says only that the service is up, and its version."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from faceprint import __version__

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, Any]:
    return {"status": "ok", "version": __version__}
