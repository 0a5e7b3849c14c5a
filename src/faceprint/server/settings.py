"""The server's settings, from ``FACEPRINT_*`` environment variables, built in ``create_app()`` (never at import).

Example:
    >>> settings = ServerSettings(data_dir=Path("/srv/fp"), api_keys="k1, k2")
    >>> settings.api_key_list, settings.layout.jobs_db
    (('k1', 'k2'), PosixPath('/srv/fp/jobs.sqlite'))
    >>> ServerSettings(max_upload_bytes=0)
    Traceback (most recent call last):
    ...
    faceprint.errors.InvalidSettingError: FACEPRINT_MAX_UPLOAD_BYTES: Input should be greater than or equal to 1
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from faceprint.crypto import RecordCipher, cipher_from_settings
from faceprint.errors import InvalidSettingError
from faceprint.jobs.context import JobLimits
from faceprint.jobs.layout import DataLayout
from faceprint.jobs.store import JobStore, SqliteJobStore
from faceprint.jobs.worker import WorkerConfig
from faceprint.settings import Settings

__all__ = ["ServerSettings", "default_data_dir"]

_CORE = ("confidential", "encryption_key", "encryption_key_file")


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/faceprint/server`` (``~/.local/share/faceprint/server``)."""
    data_home = os.environ.get("XDG_DATA_HOME")
    base = Path(data_home).expanduser() if data_home else Path.home() / ".local" / "share"
    return base / "faceprint" / "server"


class _Values(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEPRINT_", extra="ignore", frozen=True)

    data_dir: Path | None = None
    api_keys: str | None = None
    """Comma-separated keys accepted besides those made with ``faceprint keys create``."""
    max_upload_bytes: int = Field(default=2 * 1024**3, ge=1)
    max_sources: int = Field(default=100, ge=1, le=10_000)
    max_pairs: int = Field(default=1_000_000, ge=1)
    max_video_side_px: int = Field(default=8192, ge=16)
    max_video_pixels: int = Field(default=40_000_000, ge=256)
    max_video_duration_s: float = Field(default=4 * 3600.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=100)
    lease_s: float = Field(default=30.0, ge=0.5, le=3600)
    heartbeat_s: float = Field(default=1.0, gt=0, le=2.0)
    pipeline_factory: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    """``module:function`` building the pipeline (tests: ``faceprint.testing:fake_pipeline_factory``)."""
    engine_workers: int = Field(default=1, ge=1, le=256)
    database_url: str | None = None
    allowed_url_hosts: str | None = None
    """Comma-separated hosts whose http(s) URLs may be job sources (fetched into storage); none by default."""
    """A ``postgresql://`` URL: the job queue in PostgreSQL (many hosts) instead of the data dir's SQLite."""


class ServerSettings:
    """Validated server settings (see the module doc); keyword arguments override the environment.

    Raises:
        InvalidSettingError: a value out of range, naming its environment variable.
    """

    __slots__ = ("_core", "_values")

    def __init__(self, **overrides: Any) -> None:
        given = {k: v for k, v in overrides.items() if v is not None}
        # The settings every command shares (confidential mode, the encryption key) are parsed once, by
        # faceprint.settings, with the same rules and messages; the server's own ones here.
        self._core = Settings(**{k: given.pop(k) for k in _CORE if k in given})
        try:
            self._values = _Values(**given)
        except ValidationError as err:
            first = err.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "?"
            raise InvalidSettingError(
                f"FACEPRINT_{field.upper()}: {first['msg']}", details={"setting": field}
            ) from None

    @property
    def core(self) -> Settings:
        """The shared settings (``FACEPRINT_CONFIDENTIAL``, ``FACEPRINT_ENCRYPTION_KEY(_FILE)``, ...)."""
        return self._core

    @property
    def confidential(self) -> bool:
        return self._core.confidential

    def cipher(self) -> RecordCipher | None:
        """The cipher of the configured key (uploads, results, job payloads, galleries); None: no key.

        Raises:
            EncryptionKeyInvalidError: a malformed key or an unreadable key file.
        """
        return cipher_from_settings(self._core)

    @property
    def data_dir(self) -> Path:
        value = self._values.data_dir
        return (value if value is not None else default_data_dir()).expanduser()

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.data_dir)

    @property
    def api_key_list(self) -> tuple[str, ...]:
        raw = self._values.api_keys
        if raw is None:
            return ()
        return tuple(key.strip() for key in raw.split(",") if key.strip())

    @property
    def allowed_url_hosts(self) -> tuple[str, ...]:
        raw = self._values.allowed_url_hosts
        return () if raw is None else tuple(h.strip().lower() for h in raw.split(",") if h.strip())

    @property
    def max_upload_bytes(self) -> int:
        return self._values.max_upload_bytes

    @property
    def max_attempts(self) -> int:
        return self._values.max_attempts

    @property
    def pipeline_factory(self) -> str | None:
        return self._values.pipeline_factory

    @property
    def limits(self) -> JobLimits:
        v = self._values
        return JobLimits(
            max_sources=v.max_sources,
            max_pairs=v.max_pairs,
            max_video_side_px=v.max_video_side_px,
            max_video_pixels=v.max_video_pixels,
            max_video_duration_s=v.max_video_duration_s,
        )

    @property
    def worker_config(self) -> WorkerConfig:
        v = self._values
        return WorkerConfig(
            lease_s=v.lease_s,
            heartbeat_s=v.heartbeat_s,
            limits=self.limits,
            engine_workers=v.engine_workers,
            confidential=self.confidential,
        )

    def open_job_store(self, *, cipher: RecordCipher | Literal["settings"] | None = "settings") -> JobStore:
        """The job store: PostgreSQL when ``FACEPRINT_DATABASE_URL`` is set, else ``jobs.sqlite`` in the data dir.

        ``cipher``: the settings' key by default; a rotation passes its keyring.
        """
        sealing = self.cipher() if cipher == "settings" else cipher
        url = self._values.database_url
        if url is not None:
            from faceprint.jobs.pg_store import PgJobStore

            return PgJobStore(url, cipher=sealing)
        return SqliteJobStore(self.layout.jobs_db, cipher=sealing)

    def __repr__(self) -> str:
        return (
            f"ServerSettings(data_dir={self.data_dir!s}, api_keys={len(self.api_key_list)} set, "
            f"confidential={self.confidential})"
        )
