"""Settings from ``FACEPRINT_*`` environment variables, validated once, built at the edge.

The CLI builds one :class:`Settings` in ``main()`` (and the server in ``create_app()``), then passes what it
needs down; library code never reads the environment for these itself. Command-line options override a
setting for one run.

Why not pydantic-settings (which the first version used): importing it costs about 0.25 s, half of what
one photo's ``faceprint embed`` may spend on start-up (docs/performance.md), for eight fields. The rules
are the same: names are case-insensitive after the prefix, unknown ``FACEPRINT_*`` names are ignored,
booleans read ``1/true/yes/on`` and ``0/false/no/off``, and a bad value is an
:class:`~faceprint.errors.InvalidSettingError` that names its variable.

Example:
    >>> Settings(workers=2, gallery_dir=Path("/srv/galleries")).gallery_dir
    PosixPath('/srv/galleries')
    >>> Settings(workers=0)
    Traceback (most recent call last):
    ...
    faceprint.errors.InvalidSettingError: FACEPRINT_WORKERS: must be 1-256, got 0
    >>> Settings(environ={"FACEPRINT_CONFIDENTIAL": "yes", "faceprint_workers": "3"}).workers
    3
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from faceprint.errors import InvalidSettingError

__all__ = ["Settings", "load_settings", "open_executor"]

_PREFIX = "FACEPRINT_"
_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f", ""})


def _data_home() -> Path:
    data_home = os.environ.get("XDG_DATA_HOME")
    return Path(data_home).expanduser() if data_home else Path.home() / ".local" / "share"


def _path(value: object) -> Path | None:
    if value is None:
        return None
    if isinstance(value, str | os.PathLike):
        text = os.fspath(value)
        if isinstance(text, str) and text.strip():
            return Path(text).expanduser()
    raise ValueError(f"must be a path, got {value!r}")


def _workers(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a whole number, got {value!r}")
    if not 1 <= value <= 256:
        raise ValueError(f"must be 1-256, got {value}")
    return value


def _executor(value: object) -> str:
    if isinstance(value, str) and (value in ("auto", "local", "processes") or value.startswith("dask://")):
        return value
    raise ValueError(f"must be auto, local, processes or dask://HOST:PORT, got {value!r}")


def _optional_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    raise ValueError(f"must be text, got {type(value).__name__}")


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"must be true or false (1/0, yes/no, on/off), got {value!r}")


@dataclass(frozen=True, slots=True)
class _Values:
    model_dir: Path | None = None
    """Where converted models and the verified-digest cache live (default ``~/.local/share/faceprint/models``)."""
    gallery_dir: Path | None = None
    """Where named galleries live (default ``~/.local/share/faceprint/galleries``)."""
    workers: int | None = None
    """Worker processes for commands over many photos (default: every available core; 1-256)."""
    executor: str = "auto"
    """Where the engine runs: ``auto`` (processes for many photos), ``local``, ``processes`` or ``dask://``."""
    database_url: str | None = None
    """A ``postgresql://`` URL: galleries and jobs in PostgreSQL instead of SQLite files."""
    confidential: bool = False
    """Confidential mode (docs/privacy.md): no input kept, no cache written, no face data in logs."""
    encryption_key: str | None = None
    """Base64 of a 32-byte AES-256-GCM key: gallery templates and stored results encrypted at rest."""
    encryption_key_file: Path | None = None
    """A file holding that base64 key (instead of ``FACEPRINT_ENCRYPTION_KEY``)."""

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        if shown["encryption_key"] is not None:
            shown["encryption_key"] = "**********"  # a key never reaches a log or a traceback
        return " ".join(f"{name}={value!r}" for name, value in shown.items())


_PARSERS: Mapping[str, Callable[[object], Any]] = {
    "model_dir": _path,
    "gallery_dir": _path,
    "workers": _workers,
    "executor": _executor,
    "database_url": _optional_text,
    "confidential": _flag,
    "encryption_key": _optional_text,
    "encryption_key_file": _path,
}


def _environment_values(environ: Mapping[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in environ.items():
        if name.upper().startswith(_PREFIX):
            field = name[len(_PREFIX) :].lower()
            if field in _PARSERS:
                found[field] = value
    return found


class Settings:
    """The validated settings (see the module doc); an immutable view with defaults resolved.

    Args:
        environ: Where ``FACEPRINT_*`` variables are read (default: this process's environment).
        **overrides: Values that win over the environment (typed, or text as in the environment).

    Raises:
        InvalidSettingError: A value out of range, naming its environment variable; or an unknown setting.
    """

    __slots__ = ("_values",)

    def __init__(self, *, environ: Mapping[str, str] | None = None, **overrides: Any) -> None:
        unknown = sorted(set(overrides) - set(_PARSERS))
        if unknown:
            raise InvalidSettingError(f"unknown setting {unknown[0]!r}", details={"setting": unknown[0]})
        raw: dict[str, object] = {**_environment_values(os.environ if environ is None else environ), **overrides}
        parsed: dict[str, Any] = {}
        for field, value in raw.items():
            try:
                parsed[field] = _PARSERS[field](value)
            except ValueError as err:
                raise InvalidSettingError(f"{_PREFIX}{field.upper()}: {err}", details={"setting": field}) from None
        self._values = _Values(**parsed)

    @property
    def model_dir(self) -> Path:
        value = self._values.model_dir
        return value if value is not None else _data_home() / "faceprint" / "models"

    @property
    def gallery_dir(self) -> Path:
        value = self._values.gallery_dir
        return value if value is not None else _data_home() / "faceprint" / "galleries"

    @property
    def workers(self) -> int | None:
        return self._values.workers

    @property
    def executor(self) -> str:
        """``auto``, ``local``, ``processes`` or a ``dask://HOST:PORT`` scheduler (see :func:`open_executor`)."""
        return self._values.executor

    @property
    def database_url(self) -> str | None:
        return self._values.database_url

    @property
    def confidential(self) -> bool:
        return self._values.confidential

    @property
    def encryption_key(self) -> str | None:
        """The key's base64 text (kept out of ``repr``)."""
        return self._values.encryption_key

    @property
    def encryption_key_file(self) -> Path | None:
        return self._values.encryption_key_file

    def __repr__(self) -> str:
        return f"Settings({self._values!r})"


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment, with ``overrides`` (``None`` values ignored) on top."""
    return Settings(**{key: value for key, value in overrides.items() if value is not None})


def open_executor(value: str) -> Any:
    """The engine's executor for a setting: the name itself, or a connected ``DaskExecutor`` for ``dask://``.

    Example:
        >>> open_executor("processes")
        'processes'
    """
    if value.startswith("dask://"):
        from faceprint.execute.dask import DaskExecutor

        return DaskExecutor.from_url(value)
    return value
