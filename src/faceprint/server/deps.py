"""Dependencies of the routes, as ``Annotated`` aliases.

Example:
    >>> from faceprint.server.keys import key_from_header
    >>> key_from_header("Key k")
    'k'
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from faceprint.server.keys import UnauthorizedError, key_from_header
from faceprint.server.service import Service

__all__ = ["ServiceDep", "base_url", "require_key"]


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


def require_key(request: Request, service: ServiceDep) -> None:
    """Refuse (401) a request without a valid ``Authorization: Key <k>`` / ``Bearer <k>`` header."""
    secret = key_from_header(request.headers.get("authorization"))
    if secret is None:
        raise UnauthorizedError("an API key is required: send 'Authorization: Key <key>' (or 'Bearer <key>')")
    if not service.keys.check(secret, env_keys=service.env_keys):
        raise UnauthorizedError("the API key is not valid")


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")
