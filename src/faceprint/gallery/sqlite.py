"""SqliteGallery: the default gallery, one SQLite file per gallery.

The file is opened in WAL mode with a busy timeout, so any number of processes can search a gallery while
one process enrols: readers see the last committed state and never block the writer. The schema is built
by numbered migrations recorded in ``schema_version``; opening a gallery applies the missing ones, so it is
idempotent and upgrades old files in place.

A gallery holds ONE embedding contract: the first enrolment binds it (or ``contract_id=`` at creation)
and faceprints of any other contract are refused with :class:`~faceprint.errors.ContractMismatchError`.

Damaged or foreign files get clear errors, never a traceback: an existing 0-byte file is not a gallery
(it is never silently initialised as an empty one); a template whose vector blob has the wrong size or is
not finite, or a ``dim`` that is not a number, is :class:`GalleryCorruptError`. A gallery that cannot be
written (a read-only folder or file system, a read-only file) is opened read-only (SQLite ``mode=ro``, or
``immutable=1`` when even the WAL index cannot be created), so it can still be searched; a write to it is
:class:`GalleryReadOnlyError`. :meth:`SqliteGallery.resolve_or_add_person` finds or creates a person by
name in one write transaction, so concurrent first enrolments of a new name make one person, not several.

With a ``cipher`` (:class:`~faceprint.crypto.RecordCipher`), template vectors and their ``source`` are stored
AES-256-GCM encrypted, each bound to its gallery and template id (a blob moved to another row fails); a
gallery holding encrypted templates refuses clear writes, and reading it without the key is
:class:`~faceprint.crypto.EncryptionKeyRequiredError`. :meth:`SqliteGallery.rotate_encryption` re-encrypts
in place (clear templates too), in batches of one transaction each: a crash leaves every template under the
old key or the new one, both readable by a cipher holding both, and running it again finishes the job.

Example:
    >>> import tempfile, pathlib
    >>> from faceprint.types import Faceprint
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "team.sqlite"
    >>> with SqliteGallery.create(path) as gallery:
    ...     jane = gallery.add_person("Jane Doe")
    ...     fp = Faceprint(np.ones(4, np.float32), model_id="m", contract_id="m:1", package_version="0")
    ...     _ = gallery.enroll(jane.person_id, [fp])
    ...     (gallery.contract_id, gallery.get_person(jane.person_id).template_count)
    ('m:1', 1)
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from faceprint.crypto import EncryptionKeyRequiredError, RecordCipher, is_encrypted_record, rotate_in_batches
from faceprint.errors import ContractMismatchError, UsageError
from faceprint.gallery.base import EXPORT_FORMAT as EXPORT_FORMAT
from faceprint.gallery.base import (
    AmbiguousPersonError,
    ExportTarget,
    GalleryBusyError,
    GalleryExistsError,
    GalleryFormatError,
    GalleryNotFoundError,
    GallerySnapshot,
    IdentifyResult,
    ImportSummary,
    Person,
    PersonNotFoundError,
    RotationSummary,
    Template,
    TemplateNotFoundError,
    clean_text,
    export_faceprints,
    new_person_id,
    quality_from_text,
    quality_text,
    read_export,
    template_record,
    write_export,
)
from faceprint.types import Faceprint, FaceQuality

if TYPE_CHECKING:
    from faceprint.compare import Comparator

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            """CREATE TABLE persons (
                person_id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                is_unknown INTEGER NOT NULL DEFAULT 0 CHECK (is_unknown IN (0, 1)),
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            """CREATE TABLE templates (
                template_id INTEGER PRIMARY KEY AUTOINCREMENT,
                person_id TEXT NOT NULL REFERENCES persons(person_id) ON DELETE CASCADE,
                dim INTEGER NOT NULL,
                vector BLOB NOT NULL,
                model_id TEXT NOT NULL,
                package_version TEXT NOT NULL,
                model_options TEXT NOT NULL DEFAULT '{}',
                source TEXT,
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX templates_by_person ON templates(person_id, template_id)",
        ),
    ),
    (2, ("CREATE INDEX persons_by_name ON persons(name)",)),
    # The face quality of each template (FaceQuality JSON), for quality-aware identification cut-offs.
    # NULL for templates enrolled before: they are judged with the reference sigmoid.
    (3, ("ALTER TABLE templates ADD COLUMN quality TEXT",)),
)
"""Numbered schema steps; append only, never edit an applied one."""

SCHEMA_VERSION = MIGRATIONS[-1][0]

READABLE_SCHEMA_VERSION = 2
"""The oldest schema a read-only gallery can be searched with (version 3 only added template quality, read
as unknown when the column is missing); older ones need the upgrade that needs write access."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _vector_blob(faceprint: Faceprint) -> bytes:
    return faceprint.vector.astype("<f4", copy=False).tobytes()


def _decode_vector(blob: object, dim: object, where: str, gallery: str) -> np.ndarray:
    """A template's float32 vector from its blob, checked against its ``dim``; damage is GalleryCorruptError."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise GalleryCorruptError(f"gallery {gallery!r} is damaged: {where} has no vector blob ({type(blob).__name__})")
    size = len(blob)
    if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
        raise GalleryCorruptError(f"gallery {gallery!r} is damaged: {where} has dimension {dim!r}")
    if size != 4 * dim:
        raise GalleryCorruptError(
            f"gallery {gallery!r} is damaged: {where} holds {size} bytes, not the {4 * dim} of a {dim}-d vector",
            details={"bytes": size, "dim": dim},
        )
    vector = np.frombuffer(bytes(blob), dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(vector)):
        raise GalleryCorruptError(f"gallery {gallery!r} is damaged: {where} holds non-finite values (NaN, inf)")
    return vector


class GalleryCorruptError(GalleryFormatError):
    """A gallery file whose content is damaged: a template blob of the wrong size, a bad ``dim``, NaNs."""

    code = "gallery_corrupt"


class GalleryReadOnlyError(UsageError):
    """A write to a gallery that could only be opened read-only (read-only folder, file or file system)."""

    code = "gallery_read_only"


_READ_ONLY_MARKERS = ("readonly database", "read-only", "unable to open database file", "readonly")


def _is_read_only_failure(err: sqlite3.Error) -> bool:
    return any(marker in str(err).lower() for marker in _READ_ONLY_MARKERS)


class SqliteGallery:
    """A gallery in one SQLite file (WAL, busy timeout, numbered migrations).

    Use :meth:`create` or :meth:`open` rather than the constructor, and close it (or use ``with``).
    One object may be shared by threads: it serialises its own use of the connection.

    Args:
        path: the ``.sqlite`` file.
        create: create the file if missing (else :class:`GalleryNotFoundError`).
        contract_id: bind a new (or still empty) gallery to this contract.
        name: display name; defaults to the file stem.
        busy_timeout_s: how long a write waits for another process's write lock.
        read_only: open without writing (no migrations; writes raise :class:`GalleryReadOnlyError`);
            ``None`` (default) opens read-write and falls back to read-only when the file cannot be written.
        cipher: encrypt template vectors and sources at rest (see the module doc).

    Example:
        >>> gallery = SqliteGallery.open("team.sqlite")  # doctest: +SKIP
        >>> [p.name for p in gallery.persons()]  # doctest: +SKIP
        ['Jane Doe']
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = False,
        contract_id: str | None = None,
        name: str | None = None,
        busy_timeout_s: float = 30.0,
        read_only: bool | None = None,
        cipher: RecordCipher | None = None,
    ) -> None:
        self._cipher = cipher
        self._gallery_id: str | None = None
        self._path = Path(path)
        self._name = name if name is not None else self._path.stem
        self._lock = threading.RLock()
        self._snapshot: GallerySnapshot | None = None
        self._busy_timeout_s = busy_timeout_s
        self._quality_column = "quality"
        existed = self._path.exists()
        if not existed:
            if not create or read_only is True:
                raise GalleryNotFoundError(f"no gallery at {self._path}", details={"path": str(self._path)})
            self._path.parent.mkdir(parents=True, exist_ok=True)
        elif not create and self._path.is_file() and self._path.stat().st_size == 0:
            # SQLite would happily initialise it; an empty file given as a gallery to read is a mistake to
            # report. (With create=True it may be another process's gallery being created this instant.)
            raise GalleryFormatError(
                f"{self._path} is an empty file (0 bytes), not a faceprint gallery", details={"path": str(self._path)}
            )
        self.read_only = bool(read_only)
        if read_only:
            self._conn = self._connect_read_only()
            return
        try:
            self._conn = self._connect_read_write(contract_id, may_initialise=create)
        except sqlite3.OperationalError as err:
            if read_only is None and existed and contract_id is None and _is_read_only_failure(err):
                self.read_only = True
                self._conn = self._connect_read_only()
                return
            raise GalleryFormatError(f"cannot open gallery {self._path}: {err}") from err

    def _connect_read_write(self, contract_id: str | None, *, may_initialise: bool) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self._path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.OperationalError:
            raise
        except sqlite3.Error as err:
            raise GalleryFormatError(f"cannot open gallery {self._path}: {err}") from err
        self._conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            # Read-only look first: another program's SQLite file must not even have its journal mode changed.
            tables = {str(row[0]) for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables - {"sqlite_sequence"} and "schema_version" not in tables:
                raise GalleryFormatError(f"{self._path} is an SQLite file but not a faceprint gallery")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            # NORMAL is durable across application crashes in WAL mode; only an OS crash can lose the last commit.
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(may_initialise=may_initialise)
            if contract_id is not None:
                self._bind_contract(contract_id)
        except sqlite3.OperationalError as err:
            conn.close()
            if _is_read_only_failure(err):
                raise
            raise GalleryFormatError(f"{self._path} is not a faceprint gallery: {err}") from err
        except sqlite3.DatabaseError as err:
            conn.close()
            raise GalleryFormatError(f"{self._path} is not a faceprint gallery: {err}") from err
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        """A read-only connection; ``immutable=1`` when the WAL index cannot even be created (read-only media)."""
        quoted = urllib.parse.quote(str(self._path.resolve()))
        last: sqlite3.Error | None = None
        for query in ("mode=ro", "mode=ro&immutable=1"):
            try:
                conn = sqlite3.connect(
                    f"file:{quoted}?{query}",
                    uri=True,
                    timeout=self._busy_timeout_s,
                    isolation_level=None,
                    check_same_thread=False,
                )
            except sqlite3.Error as err:
                last = err
                continue
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
                self._check_schema(conn)
            except sqlite3.OperationalError as err:
                conn.close()
                last = err
                continue
            except sqlite3.DatabaseError as err:
                conn.close()
                raise GalleryFormatError(f"{self._path} is not a faceprint gallery: {err}") from err
            except BaseException:
                conn.close()
                raise
            return conn
        raise GalleryFormatError(
            f"cannot open gallery {self._path} read-only: {last}", details={"path": str(self._path)}
        )

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        """For read-only use: the schema must be complete, since no migration can run."""
        has_version = conn.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()[0]
        current = 0
        if has_version:
            current = int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0])
        if current == 0:
            raise GalleryFormatError(f"{self._path} is not a faceprint gallery")
        if current > SCHEMA_VERSION:
            raise GalleryFormatError(
                f"gallery {self._path} has schema version {current}, newer than this faceprint understands "
                f"({SCHEMA_VERSION}); upgrade faceprint",
                details={"schema_version": current, "supported": SCHEMA_VERSION},
            )
        if current < READABLE_SCHEMA_VERSION:
            raise GalleryReadOnlyError(
                f"gallery {self._path} has schema version {current} and needs an upgrade, which needs write access",
                details={"schema_version": current, "supported": SCHEMA_VERSION},
            )
        columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(templates)")}
        # A read-only gallery of schema 2 has no quality column: its templates read as of unknown quality.
        self._quality_column = "quality" if "quality" in columns else "NULL"

    # --- lifecycle ----------------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        contract_id: str | None = None,
        name: str | None = None,
        busy_timeout_s: float = 30.0,
        cipher: RecordCipher | None = None,
    ) -> SqliteGallery:
        """Create a new gallery file; refuses to touch an existing one."""
        if Path(path).exists():
            raise GalleryExistsError(f"a gallery already exists at {path}", details={"path": str(path)})
        return cls(path, create=True, contract_id=contract_id, name=name, busy_timeout_s=busy_timeout_s, cipher=cipher)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        busy_timeout_s: float = 30.0,
        read_only: bool | None = None,
        cipher: RecordCipher | None = None,
    ) -> SqliteGallery:
        """Open an existing gallery file (applying pending migrations; read-only when it cannot be written)."""
        return cls(path, create=False, name=name, busy_timeout_s=busy_timeout_s, read_only=read_only, cipher=cipher)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SqliteGallery:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteGallery({str(self._path)!r}, name={self._name!r})"

    @property
    def path(self) -> Path:
        return self._path

    @property
    def name(self) -> str:
        return self._name

    # --- transactions -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every SELECT inside sees the same committed state."""
        with self._lock:
            self._begin("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock up front so it cannot deadlock on upgrade."""
        if self.read_only:
            raise GalleryReadOnlyError(
                f"gallery {self._name!r} is open read-only (its file or folder cannot be written)",
                details={"path": str(self._path)},
            )
        with self._lock:
            self._begin("BEGIN IMMEDIATE")
            try:
                yield self._conn
                # The revision lets every process see cheaply that its cached snapshot is stale.
                self._conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('revision', '1') "
                    "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
                )
                self._conn.execute("COMMIT")
            except (sqlite3.InterfaceError, sqlite3.ProgrammingError) as err:
                # A value SQLite cannot bind (an object where text belongs): a bad input, not a crash.
                self._conn.execute("ROLLBACK")
                raise GalleryFormatError(f"gallery {self._name!r}: a value cannot be stored: {err}") from err
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _begin(self, statement: str) -> None:
        try:
            self._conn.execute(statement)
        except sqlite3.OperationalError as err:
            if "locked" in str(err) or "busy" in str(err):
                raise GalleryBusyError(f"gallery {self._name!r} is busy (another process is writing): {err}") from err
            raise

    def _migrate(self, *, may_initialise: bool = True) -> None:
        with self._lock:
            self._begin("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
                )
                (current,) = self._conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
                if current > SCHEMA_VERSION:
                    raise GalleryFormatError(
                        f"gallery {self._path} has schema version {current}, newer than this faceprint "
                        f"understands ({SCHEMA_VERSION}); upgrade faceprint",
                        details={"schema_version": current, "supported": SCHEMA_VERSION},
                    )
                if current == 0:
                    others = self._conn.execute(
                        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' "
                        "AND name NOT IN ('schema_version', 'sqlite_sequence')"
                    ).fetchone()[0]
                    if others:
                        raise GalleryFormatError(f"{self._path} is an SQLite file but not a faceprint gallery")
                    if not may_initialise:
                        # An SQLite file without our schema, opened to be read: never turn it into a gallery.
                        raise GalleryFormatError(f"{self._path} is an SQLite file but not a faceprint gallery")
                for version, statements in MIGRATIONS:
                    if version <= current:
                        continue
                    for statement in statements:
                        self._conn.execute(statement)
                    self._conn.execute(
                        "INSERT INTO schema_version(version, applied_at) VALUES (?, ?)", (version, _now())
                    )
                    if version == 1:
                        self._conn.executemany(
                            "INSERT INTO meta(key, value) VALUES (?, ?)",
                            [("created_at", _now()), ("gallery_id", uuid.uuid4().hex), ("revision", "0")],
                        )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def schema_version(self) -> int:
        """The highest applied migration."""
        with self._read() as conn:
            return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    # --- contract -----------------------------------------------------------------------------------------

    def _meta(self, conn: sqlite3.Connection, key: str) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _meta_dim(self, conn: sqlite3.Connection) -> int | None:
        text = self._meta(conn, "dim")
        if text is None:
            return None
        try:
            dim = int(text)
        except ValueError:
            dim = 0
        if dim <= 0:
            raise GalleryCorruptError(
                f"gallery {self._name!r} is damaged: its dimension is {text!r}, not a positive number",
                details={"dim": text},
            )
        return dim

    @property
    def contract_id(self) -> str | None:
        with self._read() as conn:
            return self._meta(conn, "contract_id")

    @property
    def model_id(self) -> str | None:
        with self._read() as conn:
            return self._meta(conn, "model_id")

    def _bind_contract(self, contract_id: str, model_id: str | None = None, dim: int | None = None) -> None:
        with self._write() as conn:
            self._check_or_bind(conn, contract_id, model_id, dim)

    def _check_or_bind(self, conn: sqlite3.Connection, contract_id: str, model_id: str | None, dim: int | None) -> None:
        bound = self._meta(conn, "contract_id")
        if bound is None:
            conn.execute("INSERT INTO meta(key, value) VALUES ('contract_id', ?)", (contract_id,))
            bound = contract_id
        if bound != contract_id:
            raise ContractMismatchError(
                f"gallery {self._name!r} holds faceprints of contract {bound!r}, not {contract_id!r}; "
                "use a gallery made with the same model",
                details={"gallery": bound, "faceprint": contract_id},
            )
        if model_id is not None and self._meta(conn, "model_id") is None:
            conn.execute("INSERT INTO meta(key, value) VALUES ('model_id', ?)", (model_id,))
        if dim is not None:
            bound_dim = self._meta_dim(conn)
            if bound_dim is None:
                conn.execute("INSERT INTO meta(key, value) VALUES ('dim', ?)", (str(dim),))
            elif bound_dim != dim:
                raise ContractMismatchError(
                    f"gallery {self._name!r} holds {bound_dim}-d templates, not {dim}-d",
                    details={"gallery_dim": bound_dim, "faceprint_dim": dim},
                )

    def revision(self) -> int:
        """A counter bumped by every committed write, from any process."""
        with self._read() as conn:
            value = self._meta(conn, "revision")
            return 0 if value is None else int(value)

    # --- persons ------------------------------------------------------------------------------------------

    _PERSON_SELECT = (
        "SELECT p.person_id, p.name, p.is_unknown, "
        "(SELECT COUNT(*) FROM templates t WHERE t.person_id = p.person_id) FROM persons p"
    )

    @staticmethod
    def _person(row: tuple[Any, ...]) -> Person:
        return Person(person_id=str(row[0]), name=str(row[1]), is_unknown=bool(row[2]), template_count=int(row[3]))

    def _get_person(self, conn: sqlite3.Connection, person_id: str) -> Person:
        row = conn.execute(self._PERSON_SELECT + " WHERE p.person_id = ?", (person_id,)).fetchone()
        if row is None:
            raise PersonNotFoundError(
                f"no person with id {person_id!r} in gallery {self._name!r}", details={"person_id": person_id}
            )
        return self._person(row)

    def persons(self) -> list[Person]:
        """Every person, by name then id."""
        with self._read() as conn:
            rows = conn.execute(self._PERSON_SELECT + " ORDER BY p.name, p.person_id").fetchall()
        return [self._person(row) for row in rows]

    def get_person(self, person_id: str) -> Person:
        with self._read() as conn:
            return self._get_person(conn, person_id)

    def find_persons(self, name: str) -> list[Person]:
        """Persons whose name is exactly ``name`` (names need not be unique)."""
        with self._read() as conn:
            rows = conn.execute(self._PERSON_SELECT + " WHERE p.name = ? ORDER BY p.person_id", (name,)).fetchall()
        return [self._person(row) for row in rows]

    def resolve_or_add_person(self, ref: str) -> Person:
        """The person ``ref`` names (an id, else a unique name, exact then case-insensitive), else a new one.

        Lookup and creation are one write transaction (``BEGIN IMMEDIATE``), so concurrent first enrolments
        of a new name, from any number of processes, create exactly one person.

        Raises:
            AmbiguousPersonError: several persons carry that name (use the id).

        Example:
            >>> import tempfile, pathlib
            >>> with SqliteGallery.create(pathlib.Path(tempfile.mkdtemp()) / "g.sqlite") as gallery:
            ...     first = gallery.resolve_or_add_person("Jane Doe")
            ...     gallery.resolve_or_add_person("jane doe").person_id == first.person_id
            True
        """
        with self._write() as conn:
            row = conn.execute(self._PERSON_SELECT + " WHERE p.person_id = ?", (ref,)).fetchone()
            if row is not None:
                return self._person(row)
            found = [self._person(r) for r in conn.execute(self._PERSON_SELECT + " WHERE p.name = ?", (ref,))]
            if not found:
                wanted = ref.strip().casefold()
                found = [
                    self._person(r)
                    for r in conn.execute(self._PERSON_SELECT + " ORDER BY p.person_id")
                    if str(r[1]).casefold() == wanted
                ]
            if len(found) > 1:
                ids = ", ".join(person.person_id for person in found)
                raise AmbiguousPersonError(
                    f"{len(found)} persons are named {ref!r} in gallery {self._name!r}; use an id: {ids}",
                    details={"person": ref, "person_ids": [person.person_id for person in found]},
                )
            if found:
                return found[0]
            return self._add_person(conn, ref, person_id=None, is_unknown=False)

    def add_person(self, name: str, *, person_id: str | None = None, is_unknown: bool = False) -> Person:
        """Add a person without templates (enrol them with :meth:`enroll`)."""
        with self._write() as conn:
            return self._add_person(conn, name, person_id=person_id, is_unknown=is_unknown)

    def _add_person(self, conn: sqlite3.Connection, name: str, *, person_id: str | None, is_unknown: bool) -> Person:
        name = clean_text(name, "a person's name")
        person_id = new_person_id(is_unknown=is_unknown) if person_id is None else clean_text(person_id, "a person id")
        if conn.execute("SELECT 1 FROM persons WHERE person_id = ?", (person_id,)).fetchone() is not None:
            raise UsageError(f"gallery {self._name!r} already has a person with id {person_id!r}")
        now = _now()
        conn.execute(
            "INSERT INTO persons(person_id, name, is_unknown, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            (person_id, name, int(is_unknown), now, now),
        )
        return Person(person_id=person_id, name=name, template_count=0, is_unknown=is_unknown)

    def remove_person(self, person_id: str) -> None:
        """Remove a person and all their templates."""
        with self._write() as conn:
            self._get_person(conn, person_id)
            conn.execute("DELETE FROM persons WHERE person_id = ?", (person_id,))

    def rename_person(self, person_id: str, name: str) -> Person:
        """Give a person a new name; a persistent unknown becomes known (keeping its id)."""
        with self._write() as conn:
            self._get_person(conn, person_id)
            conn.execute(
                "UPDATE persons SET name = ?, is_unknown = 0, updated_at = ? WHERE person_id = ?",
                (clean_text(name, "a person's name"), _now(), person_id),
            )
            return self._get_person(conn, person_id)

    def merge_persons(self, into_id: str, from_ids: Sequence[str]) -> Person:
        """Move every template of ``from_ids`` to ``into_id`` and remove those persons.

        The merged person keeps ``into_id``'s id and name; it is known if any merged person was known
        (a name given to one cluster of a person names all of them).
        """
        sources = list(dict.fromkeys(from_ids))
        if into_id in sources:
            raise UsageError(f"cannot merge person {into_id!r} into itself")
        if not sources:
            raise UsageError("merge needs at least one person to merge in")
        with self._write() as conn:
            target = self._get_person(conn, into_id)
            merged = [self._get_person(conn, person_id) for person_id in sources]
            now = _now()
            for person in merged:
                conn.execute("UPDATE templates SET person_id = ? WHERE person_id = ?", (into_id, person.person_id))
                conn.execute("DELETE FROM persons WHERE person_id = ?", (person.person_id,))
            if target.is_unknown:
                known = next((person for person in merged if not person.is_unknown), None)
                if known is not None:
                    conn.execute(
                        "UPDATE persons SET name = ?, is_unknown = 0, updated_at = ? WHERE person_id = ?",
                        (known.name, now, into_id),
                    )
            conn.execute("UPDATE persons SET updated_at = ? WHERE person_id = ?", (now, into_id))
            return self._get_person(conn, into_id)

    def split_person(
        self,
        person_id: str,
        template_ids: Sequence[int],
        *,
        name: str,
        is_unknown: bool = False,
        new_person_id: str | None = None,
    ) -> Person:
        """Move some of a person's templates to a new person (e.g. a cluster that mixed two people)."""
        wanted = sorted(set(int(t) for t in template_ids))
        if not wanted:
            raise UsageError("split needs at least one template id")
        with self._write() as conn:
            self._get_person(conn, person_id)
            owned = {
                int(row[0])
                for row in conn.execute("SELECT template_id FROM templates WHERE person_id = ?", (person_id,))
            }
            missing = [t for t in wanted if t not in owned]
            if missing:
                raise TemplateNotFoundError(
                    f"person {person_id!r} has no template(s) {missing}",
                    details={"person_id": person_id, "template_ids": missing},
                )
            new = self._add_person(conn, name, person_id=new_person_id, is_unknown=is_unknown)
            conn.executemany(
                "UPDATE templates SET person_id = ? WHERE template_id = ?", [(new.person_id, t) for t in wanted]
            )
            return self._get_person(conn, new.person_id)

    # --- templates ----------------------------------------------------------------------------------------

    def enroll(
        self, person_id: str, faceprints: Sequence[Faceprint], *, sources: Sequence[str | None] | None = None
    ) -> list[int]:
        """Add templates to a person; returns their template ids.

        Raises:
            ContractMismatchError: a faceprint's contract (or dimension) differs from the gallery's.
            PersonNotFoundError: no such person.
        """
        if sources is not None and len(sources) != len(faceprints):
            raise UsageError(f"{len(faceprints)} faceprints but {len(sources)} sources")
        if not faceprints:
            return []
        with self._write() as conn:
            self._get_person(conn, person_id)
            return self._insert_templates(
                conn,
                person_id,
                faceprints,
                sources if sources is not None else [None] * len(faceprints),
                [None] * len(faceprints),
            )

    def _insert_templates(
        self,
        conn: sqlite3.Connection,
        person_id: str,
        faceprints: Sequence[Faceprint],
        sources: Sequence[str | None],
        created: Sequence[str | None],
    ) -> list[int]:
        ids: list[int] = []
        now = _now()
        cipher = self._write_cipher(conn)
        for faceprint, source, created_at in zip(faceprints, sources, created, strict=True):
            self._check_or_bind(conn, faceprint.contract_id, faceprint.model_id, faceprint.dim)
            cursor = conn.execute(
                "INSERT INTO templates(person_id, dim, vector, model_id, package_version, model_options, source, "
                "created_at, quality) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    person_id,
                    faceprint.dim,
                    # Encrypted records are bound to their template id, known only after the insert.
                    b"" if cipher is not None else _vector_blob(faceprint),
                    faceprint.model_id,
                    faceprint.package_version,
                    json.dumps(dict(faceprint.model_options), sort_keys=True),
                    source if cipher is None else None,
                    now if created_at is None else created_at,
                    # In clear even in an encrypted gallery: pose, size and sharpness say nothing of who it is.
                    quality_text(faceprint.quality),
                ),
            )
            template_id = int(cursor.lastrowid or 0)
            if cipher is not None:
                self._store_encrypted(conn, cipher, template_id, _vector_blob(faceprint), source)
            ids.append(template_id)
        return ids

    # --- encryption at rest -------------------------------------------------------------------------------

    def _context(self, conn: sqlite3.Connection, template_id: object, column: str) -> str:
        if self._gallery_id is None:
            self._gallery_id = self._meta(conn, "gallery_id")
        return f"gallery/{self._gallery_id}/templates/{template_id}/{column}"

    def _write_cipher(self, conn: sqlite3.Connection) -> RecordCipher | None:
        """The cipher to write with; refuses clear writes into a gallery that holds encrypted templates."""
        if self._cipher is None:
            if self._meta(conn, "encryption") is not None:
                raise EncryptionKeyRequiredError(
                    f"gallery {self._name!r} is encrypted: set FACEPRINT_ENCRYPTION_KEY (or _FILE) to write to it",
                    details={"gallery": self._name},
                )
            return None
        conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('encryption', 'aes-256-gcm/1')")
        return self._cipher

    def _store_encrypted(
        self, conn: sqlite3.Connection, cipher: RecordCipher, template_id: int, vector: bytes, source: str | None
    ) -> None:
        sealed_source = (
            None
            if source is None
            else cipher.encrypt(source.encode("utf-8"), context=self._context(conn, template_id, "source"))
        )
        conn.execute(
            "UPDATE templates SET vector = ?, source = ? WHERE template_id = ?",
            (cipher.encrypt(vector, context=self._context(conn, template_id, "vector")), sealed_source, template_id),
        )

    def _clear_vector(self, conn: sqlite3.Connection, template_id: object, blob: Any, dim: object) -> Any:
        """A template's vector blob in clear: encrypted ones (not ``4 * dim`` bytes, with a header) decrypted."""
        if not isinstance(blob, bytes | bytearray | memoryview) or not isinstance(dim, int):
            return blob
        if len(blob) == 4 * dim or not is_encrypted_record(blob):
            return blob
        return self._decrypt(conn, template_id, "vector", blob)

    def _clear_source(self, conn: sqlite3.Connection, template_id: object, source: object) -> str | None:
        if isinstance(source, bytes) and is_encrypted_record(source):
            return self._decrypt(conn, template_id, "source", source).decode("utf-8")
        return None if source is None else str(source)

    def _decrypt(
        self, conn: sqlite3.Connection, template_id: object, column: str, blob: bytes | bytearray | memoryview
    ) -> bytes:
        if self._cipher is None:
            raise EncryptionKeyRequiredError(
                f"gallery {self._name!r} holds encrypted templates: set FACEPRINT_ENCRYPTION_KEY (or _FILE) to read it",
                details={"gallery": self._name},
            )
        return self._cipher.decrypt(blob, context=self._context(conn, template_id, column))

    def rotate_encryption(
        self, *, batch_size: int = 256, after_batch: Callable[[int], None] | None = None
    ) -> RotationSummary:
        """Re-encrypt every template not yet under this gallery's cipher's key (clear ones included).

        The cipher must hold the old keys as ``previous_keys``. Each batch is one write transaction, so
        a crash (or ``after_batch`` raising, as tests do) leaves each template wholly under one key, and a
        second run picks up where the first stopped.

        Example:
            >>> from faceprint.crypto import EncryptionKey
            >>> old, new = EncryptionKey.generate(), EncryptionKey.generate()
            >>> cipher = RecordCipher(new, previous_keys=[old])
            >>> gallery = SqliteGallery.open("team.sqlite", cipher=cipher)  # doctest: +SKIP
            >>> gallery.rotate_encryption().templates_rotated  # doctest: +SKIP
            12
        """
        if self._cipher is None:
            raise EncryptionKeyRequiredError(
                "rotating a gallery's encryption needs the new key in FACEPRINT_ENCRYPTION_KEY"
            )
        cipher = self._cipher

        def batch(after_id: int) -> tuple[int | None, int, int]:
            rotated = 0
            with self._write() as conn:
                self._write_cipher(conn)
                rows = conn.execute(
                    "SELECT template_id, vector, source, dim FROM templates WHERE template_id > ? "
                    "ORDER BY template_id LIMIT ?",
                    (after_id, batch_size),
                ).fetchall()
                for template_id, blob, source, dim in rows:
                    if not cipher.needs_rotation(blob) and (source is None or not cipher.needs_rotation(source)):
                        continue
                    clear = self._clear_vector(conn, template_id, blob, dim)
                    vector = _decode_vector(clear, dim, f"template {template_id}", self._name)
                    clear_source = self._clear_source(conn, template_id, source)
                    self._store_encrypted(conn, cipher, int(template_id), vector.astype("<f4").tobytes(), clear_source)
                    rotated += 1
            return (int(rows[-1][0]) if rows else None), rotated, len(rows) - rotated

        rotated, current = rotate_in_batches(batch, start=-1, after_batch=after_batch)
        self._snapshot = None
        return RotationSummary(templates_rotated=rotated, templates_current=current)

    def remove_template(self, template_id: int) -> None:
        with self._write() as conn:
            cursor = conn.execute("DELETE FROM templates WHERE template_id = ?", (int(template_id),))
            if cursor.rowcount == 0:
                raise TemplateNotFoundError(
                    f"no template {template_id} in gallery {self._name!r}", details={"template_id": template_id}
                )

    def templates(self, person_id: str | None = None) -> list[Template]:
        """Templates of one person (or all), oldest first."""
        with self._read() as conn:
            contract_id = self._meta(conn, "contract_id")
            if person_id is not None:
                self._get_person(conn, person_id)
                rows = conn.execute(
                    "SELECT template_id, person_id, vector, model_id, package_version, model_options, source, "
                    f"created_at, dim, {self._quality_column} FROM templates WHERE person_id = ? ORDER BY template_id",
                    (person_id,),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT template_id, person_id, vector, model_id, package_version, model_options, source, "
                    f"created_at, dim, {self._quality_column} FROM templates ORDER BY template_id"
                ).fetchall()
            dim = self._meta_dim(conn)
            rows = [
                (
                    *row[:2],
                    self._clear_vector(conn, row[0], row[2], row[8]),
                    *row[3:6],
                    self._clear_source(conn, row[0], row[6]),
                    *row[7:],
                )
                for row in rows
            ]
        return [
            Template(
                template_id=int(row[0]),
                person_id=str(row[1]),
                faceprint=self._template_faceprint(
                    row[0], row[2], row[8], dim, row[3], contract_id, row[4], row[5], row[9]
                ),
                source=row[6],
                created_at=row[7],
            )
            for row in rows
        ]

    def _template_faceprint(
        self,
        template_id: object,
        blob: object,
        row_dim: object,
        gallery_dim: int | None,
        model_id: object,
        contract_id: str | None,
        package_version: object,
        model_options: object,
        quality: object = None,
    ) -> Faceprint:
        where = f"template {template_id}"
        if gallery_dim is None:
            raise GalleryCorruptError(f"gallery {self._name!r} is damaged: it holds templates but no dimension")
        if row_dim != gallery_dim:
            raise GalleryCorruptError(
                f"gallery {self._name!r} is damaged: {where} is {row_dim!r}-d in a {gallery_dim}-d gallery"
            )
        vector = _decode_vector(blob, row_dim, where, self._name)
        try:
            options = json.loads(model_options) if isinstance(model_options, str | bytes) else None
        except json.JSONDecodeError:
            options = None
        if not isinstance(options, dict):
            raise GalleryCorruptError(f"gallery {self._name!r} is damaged: {where} has unreadable model options")
        return Faceprint(
            vector=vector,
            model_id=str(model_id),
            contract_id=str(contract_id),
            package_version=str(package_version),
            model_options=options,
            quality=self._quality(quality, where),
        )

    def _quality(self, text: object, where: str) -> FaceQuality | None:
        try:
            return quality_from_text(text, where)
        except GalleryFormatError as err:
            raise GalleryCorruptError(f"gallery {self._name!r} is damaged: {err.message}") from err

    def template_count(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM templates").fetchone()[0])

    def snapshot(self) -> GallerySnapshot:
        """All templates as one matrix, read in one transaction; cached until any process writes."""
        with self._read() as conn:
            revision_text = self._meta(conn, "revision")
            revision = 0 if revision_text is None else int(revision_text)
            cached = self._snapshot
            if cached is not None and cached.revision == revision:
                return cached
            contract_id = self._meta(conn, "contract_id")
            bound_dim = self._meta_dim(conn)
            persons = [
                self._person(row) for row in conn.execute(self._PERSON_SELECT + " ORDER BY p.person_id").fetchall()
            ]
            rows = [
                (row[0], self._clear_vector(conn, row[2], row[1], row[3]), row[2], row[3], row[4])
                for row in conn.execute(
                    f"SELECT person_id, vector, template_id, dim, {self._quality_column} FROM templates "
                    "ORDER BY person_id, template_id"
                )
            ]
        if rows and bound_dim is None:
            raise GalleryCorruptError(f"gallery {self._name!r} is damaged: it holds templates but no dimension")
        dim = 0 if bound_dim is None else bound_dim
        for row in rows:
            if row[3] != dim:
                raise GalleryCorruptError(
                    f"gallery {self._name!r} is damaged: template {row[2]} is {row[3]!r}-d in a {dim}-d gallery"
                )
            _decode_vector(row[1], dim, f"template {row[2]}", self._name)
        number = {person.person_id: i for i, person in enumerate(persons)}
        vectors = np.frombuffer(b"".join(bytes(row[1]) for row in rows), dtype="<f4").astype(np.float32)
        snapshot = GallerySnapshot(
            name=self._name,
            contract_id=contract_id,
            persons=tuple(persons),
            vectors=vectors.reshape(len(rows), dim),
            person_rows=np.fromiter((number[row[0]] for row in rows), dtype=np.int64, count=len(rows)),
            revision=revision,
            qualities=tuple(self._quality(row[4], f"template {row[2]}") for row in rows),
        )
        self._snapshot = snapshot
        return snapshot

    def search(
        self,
        faceprints: Sequence[Faceprint],
        *,
        top_k: int = 3,
        min_similarity: float | None = None,
        max_distance: float | None = None,
        probability: Callable[[float], float] | None = None,
        default_min_similarity: float | None = None,
        comparator: Comparator | None = None,
    ) -> list[IdentifyResult]:
        """Search this gallery in process (numpy, or FAISS when large); several galleries: ``gallery.search``.

        Example:
            >>> gallery.search([probe], top_k=3, max_distance=0.45)[0].best.name  # doctest: +SKIP
            'Jane Doe'
        """
        from faceprint.gallery.search import MultiGalleryIndex

        return MultiGalleryIndex([self]).search(
            faceprints,
            top_k=top_k,
            min_similarity=min_similarity,
            max_distance=max_distance,
            probability=probability,
            default_min_similarity=default_min_similarity,
            comparator=comparator,
        )

    # --- export / import ----------------------------------------------------------------------------------

    def export_jsonl(self, path: ExportTarget) -> int:
        """Write the gallery to a portable JSON-lines file; returns the number of templates written.

        Line 1 is a header (``format``, ``contract_id``, ``model_id``, counts); then one line per person
        with their templates as ``faceprint/1`` dicts. Written to a temp file and renamed into place, so a
        crash never leaves half an export.
        """

        with self._read() as conn:
            contract_id = self._meta(conn, "contract_id")
            model_id = self._meta(conn, "model_id")
            persons = [
                self._person(row) for row in conn.execute(self._PERSON_SELECT + " ORDER BY p.person_id").fetchall()
            ]
            rows = [
                (
                    row[0],
                    self._clear_vector(conn, row[7], row[1], row[8]),
                    *row[2:5],
                    self._clear_source(conn, row[7], row[5]),
                    *row[6:],
                )
                for row in conn.execute(
                    "SELECT person_id, vector, model_id, package_version, model_options, source, created_at, "
                    f"template_id, dim, {self._quality_column} FROM templates ORDER BY person_id, template_id"
                )
            ]
            dim = self._meta_dim(conn)
        by_person: dict[str, list[dict[str, Any]]] = {person.person_id: [] for person in persons}
        for row in rows:
            faceprint = self._template_faceprint(
                row[7], row[1], row[8], dim, row[2], contract_id, row[3], row[4], row[9]
            )
            by_person[row[0]].append(template_record(faceprint, row[5], row[6]))
        return write_export(
            path,
            gallery=self._name,
            contract_id=contract_id,
            model_id=model_id,
            persons=persons,
            templates=by_person,
            exported_at=_now(),
        )

    def import_jsonl(self, path: ExportTarget) -> ImportSummary:
        """Add the persons and templates of an export, all or nothing.

        Persons are matched by id: an existing person gets the templates it does not already hold, so
        importing the same file twice adds nothing the second time.

        Raises:
            ContractMismatchError: the export's contract differs from this gallery's.
            GalleryFormatError: the file is not a faceprint gallery export.
        """
        header, records = read_export(path)
        contract_id = header.get("contract_id")
        persons_added = templates_added = templates_skipped = 0
        with self._write() as conn:
            if isinstance(contract_id, str):
                self._check_or_bind(conn, contract_id, None, None)
            for record in records:
                person_id = str(record["person_id"])
                faceprints = export_faceprints(record, path)
                row = conn.execute("SELECT 1 FROM persons WHERE person_id = ?", (person_id,)).fetchone()
                existing: set[bytes] = set()
                if row is None:
                    self._add_person(
                        conn, str(record["name"]), person_id=person_id, is_unknown=bool(record.get("is_unknown"))
                    )
                    persons_added += 1
                else:
                    existing = {
                        bytes(self._clear_vector(conn, template_id, blob, dim))
                        for (template_id, blob, dim) in conn.execute(
                            "SELECT template_id, vector, dim FROM templates WHERE person_id = ?", (person_id,)
                        )
                    }
                keep = [i for i, fp in enumerate(faceprints) if _vector_blob(fp) not in existing]
                templates_skipped += len(faceprints) - len(keep)
                templates_added += len(keep)
                self._insert_templates(
                    conn,
                    person_id,
                    [faceprints[i] for i in keep],
                    [record["templates"][i].get("source") for i in keep],
                    [record["templates"][i].get("created_at") for i in keep],
                )
        return ImportSummary(
            persons_added=persons_added, templates_added=templates_added, templates_skipped=templates_skipped
        )
