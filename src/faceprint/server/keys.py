"""API keys: those in ``FACEPRINT_API_KEYS`` and those made with ``faceprint keys create`` (hashed on disk).

Only a key's sha256 is stored; the key itself is shown once, when it is created. No key configured means
every request is refused, never that the server is open.

Example:
    >>> import tempfile
    >>> keys = KeyStore(Path(tempfile.mkdtemp()) / "keys.json")
    >>> created, secret = keys.create("ci")
    >>> keys.check(secret, env_keys=()), keys.check("wrong", env_keys=()), keys.check("e", env_keys=("e",))
    (True, False, True)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceprint.errors import FaceprintError, InputError, UsageError
from faceprint.io.atomic import write_atomic

__all__ = ["ApiKey", "KeyNotFoundError", "KeyStore", "UnauthorizedError", "key_from_header"]


class UnauthorizedError(FaceprintError):
    """No valid API key in the ``Authorization`` header (``Key <key>`` or ``Bearer <key>``)."""

    code = "unauthorized"
    http_status = 401


class KeyNotFoundError(InputError):
    code = "key_not_found"
    http_status = 404


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    sha256: str
    prefix: str
    """The key's first characters, to tell keys apart in listings."""
    time_created_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "sha256": self.sha256,
            "prefix": self.prefix,
            "time_created_s": self.time_created_s,
        }


class KeyStore:
    """Keys in one JSON file (replaced atomically on each change); re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._cache: tuple[float, int, tuple[ApiKey, ...]] | None = None

    def keys(self) -> tuple[ApiKey, ...]:
        with self._lock:
            try:
                stat = self._path.stat()
            except FileNotFoundError:
                return ()
            if self._cache is not None and self._cache[:2] == (stat.st_mtime, stat.st_size):
                return self._cache[2]
            data = json.loads(self._path.read_text("utf-8"))
            keys = tuple(ApiKey(**entry) for entry in data["keys"])
            self._cache = (stat.st_mtime, stat.st_size, keys)
            return keys

    def _write(self, keys: tuple[ApiKey, ...]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self._path, json.dumps({"keys": [k.to_dict() for k in keys]}, indent=2).encode("utf-8"))
        self._path.chmod(0o600)

    def create(self, name: str) -> tuple[ApiKey, str]:
        """A new key: its record and the secret (shown once)."""
        if not name.strip() or len(name) > 100:
            raise UsageError("a key's name must be 1-100 characters")
        secret = "fpk_" + secrets.token_urlsafe(32)
        key = ApiKey(
            id=uuid.uuid4().hex[:12],
            name=name.strip(),
            sha256=_digest(secret),
            prefix=secret[:8],
            time_created_s=time.time(),
        )
        self._write((*self.keys(), key))
        return key, secret

    def revoke(self, ref: str) -> ApiKey:
        """Remove the key with this id or name."""
        keys = self.keys()
        matching = [k for k in keys if ref in (k.id, k.name)]
        if not matching:
            raise KeyNotFoundError(f"no API key {ref!r}", details={"key": ref})
        if len(matching) > 1:
            raise UsageError(f"{len(matching)} keys are named {ref!r}: revoke by id")
        self._write(tuple(k for k in keys if k.id != matching[0].id))
        return matching[0]

    def check(self, secret: str, *, env_keys: tuple[str, ...]) -> bool:
        """True when ``secret`` is one of ``env_keys`` or a stored key (constant-time comparisons)."""
        if not secret:
            return False
        found = False
        for env_key in env_keys:
            found |= hmac.compare_digest(env_key.encode("utf-8"), secret.encode("utf-8"))
        digest = _digest(secret)
        for key in self.keys():
            found |= hmac.compare_digest(key.sha256, digest)
        return found


def key_from_header(value: str | None) -> str | None:
    """The key of an ``Authorization: Key <k>`` or ``Bearer <k>`` header.

    Example:
        >>> key_from_header("Key abc"), key_from_header("bearer abc"), key_from_header("Basic abc")
        ('abc', 'abc', None)
    """
    if value is None:
        return None
    scheme, _, credential = value.strip().partition(" ")
    if scheme.lower() not in ("key", "bearer") or not credential.strip():
        return None
    return credential.strip()
