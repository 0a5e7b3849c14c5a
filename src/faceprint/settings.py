"""Settings from ``FACEPRINT_*`` environment variables, validated once, built at the edge.

The CLI builds one :class:`Settings` in ``main()`` (and the server in ``create_app()``), then passes what it
needs down; library code never reads the environment for these itself. Command-line options override a
setting for one run.

Example:
    >>> Settings(workers=2, gallery_dir=Path("/srv/galleries")).gallery_dir
    PosixPath('/srv/galleries')
    >>> Settings(workers=0)
    Traceback (most recent call last):
    ...
    faceprint.errors.InvalidSettingError: FACEPRINT_WORKERS: Input should be greater than or equal to 1
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from faceprint.errors import InvalidSettingError

__all__ = ["Settings", "load_settings", "open_executor"]


def _data_home() -> Path:
    data_home = os.environ.get("XDG_DATA_HOME")
    return Path(data_home).expanduser() if data_home else Path.home() / ".local" / "share"


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEPRINT_", extra="ignore", frozen=True)

    model_dir: Path | None = None
    """Where converted models and the verified-digest cache live (default ``~/.local/share/faceprint/models``)."""
    gallery_dir: Path | None = None
    """Where named galleries live (default ``~/.local/share/faceprint/galleries``)."""
    workers: int | None = Field(default=None, ge=1, le=256)
    """Worker processes for commands over many photos (default: every available core)."""
    executor: str = "auto"
    """Where the engine runs: ``auto`` (processes for many photos), ``local`` or ``processes``."""
    database_url: str | None = None
    """A ``postgresql://`` URL: galleries and jobs in PostgreSQL instead of SQLite files."""
    confidential: bool = False
    """Confidential mode (docs/privacy.md): no input kept, no cache written, no face data in logs."""
    encryption_key: SecretStr | None = None
    """Base64 of a 32-byte AES-256-GCM key: gallery templates and stored results encrypted at rest."""
    encryption_key_file: Path | None = None
    """A file holding that base64 key (instead of ``FACEPRINT_ENCRYPTION_KEY``)."""

    @field_validator("executor")
    @classmethod
    def _executor(cls, value: str) -> str:
        if value in ("auto", "local", "processes") or value.startswith("dask://"):
            return value
        raise ValueError("must be auto, local, processes or dask://HOST:PORT")

    @field_validator("model_dir", "gallery_dir", "encryption_key_file")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()


class Settings:
    """The validated settings (see the module doc); an immutable view with defaults resolved.

    Raises:
        InvalidSettingError: A value out of range, naming its environment variable.
    """

    __slots__ = ("_values",)

    def __init__(self, **overrides: Any) -> None:
        try:
            self._values = _Settings(**overrides)
        except ValidationError as err:
            first = err.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "?"
            raise InvalidSettingError(
                f"FACEPRINT_{field.upper()}: {first['msg']}", details={"setting": field}
            ) from None

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
        value = self._values.encryption_key
        return None if value is None else value.get_secret_value()

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
