"""What the app holds while it runs (built in the lifespan, hung on ``app.state.service``; no module globals).

Example:
    >>> Service.__name__
    'Service'
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from faceprint.analyze import Analyzer
from faceprint.crypto import RecordCipher
from faceprint.jobs.layout import DataLayout
from faceprint.jobs.store import JobStore
from faceprint.jobs.uploads import UploadStore
from faceprint.server.keys import KeyStore
from faceprint.server.settings import ServerSettings

__all__ = ["Service"]


@dataclass(frozen=True, slots=True, eq=False)
class Service:
    settings: ServerSettings
    layout: DataLayout
    store: JobStore
    uploads: UploadStore
    keys: KeyStore
    analyzer: Analyzer
    """For the synchronous calls (compare, detect, enrol); jobs run in the worker processes."""
    env_keys: tuple[str, ...]
    cipher: RecordCipher | None = None
    """Seals uploads, results and galleries at rest (``FACEPRINT_ENCRYPTION_KEY``); None: no key."""
    galleries_lock: threading.Lock = field(default_factory=threading.Lock)
    started_s: float = field(default_factory=time.time)
