"""PostgreSQL plumbing shared by the pgvector gallery and the PostgreSQL job store.

Everything server-side in faceprint goes through here: recognising a database URL, connecting with a
clear error instead of a driver traceback, hiding passwords in messages, and numbered migrations kept in a
``schema_version`` table per schema, applied under an advisory lock so that several processes starting at
once never run one twice.

The drivers (``psycopg`` 3 and ``pgvector``) come with the ``postgres`` extra and are imported lazily, so
the embedded (SQLite) default never needs them.

Example:
    >>> is_database_url("postgresql://faceprint@db.example.org/faces")
    True
    >>> is_database_url("staff.sqlite")
    False
    >>> redact_url("postgresql://app:s3cret@db.example.org:5432/faces")
    'postgresql://app:***@db.example.org:5432/faces'
"""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from faceprint.errors import BackendUnavailableError, FaceprintError, UsageError

if TYPE_CHECKING:
    import psycopg

DATABASE_URL_ENV = "FACEPRINT_DATABASE_URL"
"""Environment variable naming the PostgreSQL server of galleries and jobs (``postgresql://…``)."""

URL_SCHEMES = ("postgresql://", "postgres://")

_PASSWORD_RE = re.compile(r"^(?P<head>[a-z]+://[^:/?#@]*):(?P<password>[^@/?#]*)@")
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

Migration = tuple[int, tuple[str, ...]]
"""``(version, statements)``; statements may use ``{schema}``, replaced by the (validated) schema name."""


class DatabaseUnavailableError(FaceprintError):
    """The PostgreSQL server cannot be reached, refused the login, or dropped the connection."""

    code = "database_unavailable"
    http_status = 503


class DatabaseSetupError(UsageError):
    """The database lacks something faceprint cannot create itself (e.g. the ``vector`` extension)."""

    code = "database_setup"


class DatabaseSchemaError(FaceprintError):
    """A schema written by a newer faceprint (or something else) where faceprint keeps its tables."""

    code = "database_schema"
    http_status = 500


def is_database_url(ref: str) -> bool:
    """Whether ``ref`` names a PostgreSQL database (``postgresql://`` or ``postgres://``).

    Example:
        >>> is_database_url("postgres://localhost/faces")
        True
    """
    return ref.startswith(URL_SCHEMES)


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs).

    Example:
        >>> redact_url("postgresql://localhost/faces")
        'postgresql://localhost/faces'
    """
    return _PASSWORD_RE.sub(lambda m: f"{m.group('head')}:***@", url, count=1)


def _psycopg() -> Any:
    try:
        return importlib.import_module("psycopg")
    except ImportError as err:
        raise BackendUnavailableError(
            "PostgreSQL needs the optional 'postgres' extra: pip install 'faceprint[postgres]'",
            details={"extra": "postgres"},
        ) from err


def connect(
    url: str, *, connect_timeout_s: float = 10.0, application_name: str = "faceprint"
) -> psycopg.Connection[Any]:
    """An autocommit connection to ``url`` (use ``conn.transaction()`` blocks for atomic work).

    Raises:
        BackendUnavailableError: psycopg is not installed.
        DatabaseUnavailableError: the server cannot be reached or refused the login.
        UsageError: ``url`` is not a PostgreSQL URL.

    Example:
        >>> conn = connect("postgresql://faceprint@localhost/faces")  # doctest: +SKIP
    """
    if not is_database_url(url):
        raise UsageError(f"not a PostgreSQL URL (postgresql://…): {redact_url(url)!r}")
    driver = _psycopg()
    try:
        conn: psycopg.Connection[Any] = driver.connect(
            url,
            autocommit=True,
            connect_timeout=max(1, round(connect_timeout_s)),
            application_name=application_name,
        )
    except driver.ProgrammingError as err:  # malformed conninfo
        raise UsageError(f"invalid database URL {redact_url(url)!r}: {err}") from err
    except driver.OperationalError as err:
        raise DatabaseUnavailableError(
            f"cannot connect to {redact_url(url)}: {str(err).strip()}", details={"url": redact_url(url)}
        ) from err
    return conn


def unavailable(url: str, err: Exception) -> DatabaseUnavailableError:
    """The error to raise when an open connection fails mid-way (server gone, connection dropped)."""
    return DatabaseUnavailableError(
        f"lost the connection to {redact_url(url)}: {str(err).strip()}", details={"url": redact_url(url)}
    )


def operational_errors() -> tuple[type[Exception], ...]:
    """The psycopg exceptions that mean "the server or the connection failed" (not "your SQL is wrong")."""
    driver = _psycopg()
    return (driver.OperationalError, driver.InterfaceError)


def check_schema_name(schema: str) -> str:
    """``schema`` when it is a plain lower-case identifier (so it can be spliced into SQL), else ValueError.

    Example:
        >>> check_schema_name("faceprint_jobs")
        'faceprint_jobs'
    """
    if not _SCHEMA_RE.match(schema):
        raise ValueError(f"not a plain schema name: {schema!r}")
    return schema


def advisory_key(text: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_xact_lock`` derived from ``text``.

    Example:
        >>> advisory_key("faceprint") == advisory_key("faceprint")
        True
    """
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def now_text() -> str:
    """The current UTC time as ISO 8601 seconds (the form every faceprint table stores)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def apply_migrations(
    conn: psycopg.Connection[Any],
    *,
    schema: str,
    migrations: Sequence[Migration],
    newer: Callable[[int, int], FaceprintError] | None = None,
    after: Callable[[int], None] | None = None,
) -> int:
    """Create ``schema`` if needed and apply its missing numbered migrations in one transaction.

    Args:
        conn: an autocommit connection.
        schema: plain lower-case schema name.
        migrations: append-only ``(version, statements)`` steps, ascending.
        newer: builds the error for a schema newer than ``migrations`` (``(found, supported)``).
        after: called with each version right after its statements ran (same transaction), for data steps.

    Returns:
        The schema version now in force.

    Raises:
        DatabaseSchemaError: (or ``newer``'s error) the schema is newer than this faceprint.
    """
    check_schema_name(schema)
    latest = migrations[-1][0] if migrations else 0
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key(f"faceprint-migrate:{schema}"),))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {schema}.schema_version "
            "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        row = conn.execute(f"SELECT COALESCE(MAX(version), 0) FROM {schema}.schema_version").fetchone()
        current = 0 if row is None else int(row[0])
        if current > latest:
            if newer is not None:
                raise newer(current, latest)
            raise DatabaseSchemaError(
                f"schema {schema} has version {current}, newer than this faceprint understands ({latest}); "
                "upgrade faceprint",
                details={"schema": schema, "schema_version": current, "supported": latest},
            )
        for version, statements in migrations:
            if version <= current:
                continue
            for statement in statements:
                conn.execute(statement.replace("{schema}", schema))
            conn.execute(
                f"INSERT INTO {schema}.schema_version(version, applied_at) VALUES (%s, %s)", (version, now_text())
            )
            if after is not None:
                after(version)
            current = version
    return current
