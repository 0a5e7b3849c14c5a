"""Open a gallery from a path or a database URL: ``postgresql://…`` is PostgreSQL, anything else an SQLite file.

A database holds many galleries, so a gallery URL names one with a ``gallery`` query parameter, which
faceprint removes before connecting (libpq would refuse it)::

    postgresql://app:secret@db.example.org:5432/faces?gallery=staff

``FACEPRINT_DATABASE_URL`` (``Settings.database_url``) is the same URL without the ``gallery`` part: with
it set, gallery NAMEs live in that database (:func:`open_named_gallery`).

Example:
    >>> split_gallery_url("postgresql://db.example.org/faces?gallery=staff&sslmode=require")
    ('postgresql://db.example.org/faces?sslmode=require', 'staff')
    >>> gallery_url("postgresql://db.example.org/faces", "staff")
    'postgresql://db.example.org/faces?gallery=staff'
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from faceprint.errors import UsageError
from faceprint.gallery.base import GalleryNotFoundError
from faceprint.gallery.sqlite import SqliteGallery
from faceprint.postgres import is_database_url, redact_url

if TYPE_CHECKING:
    from faceprint.crypto import RecordCipher
    from faceprint.gallery.pgvector import PgvectorGallery

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

__all__ = [
    "gallery_url",
    "is_database_url",
    "open_gallery_url",
    "open_named_gallery",
    "resolve_gallery_ref",
    "split_gallery_url",
]


def split_gallery_url(url: str) -> tuple[str, str | None]:
    """``(connection URL, gallery name or None)``: the ``gallery`` query parameter taken out.

    Example:
        >>> split_gallery_url("postgresql://localhost/faces")
        ('postgresql://localhost/faces', None)
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = [value for key, value in query if key == "gallery"]
    if len(names) > 1:
        raise UsageError(f"a gallery URL names one gallery, got {len(names)}: {redact_url(url)!r}")
    rest = urlencode([(key, value) for key, value in query if key != "gallery"], safe="/")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), (names[0] if names else None)


def gallery_url(database_url: str, name: str) -> str:
    """The URL of gallery ``name`` in the database at ``database_url``.

    Example:
        >>> gallery_url("postgresql://localhost/faces?sslmode=disable", "visitors")
        'postgresql://localhost/faces?sslmode=disable&gallery=visitors'
    """
    base, existing = split_gallery_url(database_url)
    if existing is not None:
        raise UsageError(f"{redact_url(database_url)!r} already names a gallery ({existing!r})")
    parts = urlsplit(base)
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("gallery", name)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, safe="/"), parts.fragment))


def open_gallery_url(
    ref: str | os.PathLike[str],
    *,
    name: str | None = None,
    create: bool = False,
    contract_id: str | None = None,
    cipher: RecordCipher | None = None,
) -> SqliteGallery | PgvectorGallery:
    """Open (or create) the gallery at a ``postgresql://…?gallery=NAME`` URL or an SQLite file path.

    Args:
        ref: a database URL or a path to a ``.sqlite`` file.
        name: the gallery name in the database (instead of ``?gallery=``); for SQLite, the display name.
        create: create it when missing (else :class:`~faceprint.gallery.base.GalleryNotFoundError`).
        contract_id: bind a new (or still empty) gallery to this contract.
        cipher: encrypt templates at rest (``FACEPRINT_ENCRYPTION_KEY``); needed to read encrypted ones.

    Raises:
        GalleryNotFoundError: it does not exist and ``create`` is False.
        UsageError: a database URL without a gallery name, or two different names.
        DatabaseUnavailableError: the server cannot be reached.

    Example:
        >>> with open_gallery_url("postgresql://localhost/faces?gallery=staff") as g:  # doctest: +SKIP
        ...     g.persons()
    """
    text = os.fspath(ref)
    if is_database_url(text):
        from faceprint.gallery.pgvector import PgvectorGallery

        url, in_url = split_gallery_url(text)
        if in_url is not None and name is not None and in_url != name:
            raise UsageError(f"the URL names gallery {in_url!r} but {name!r} was asked for")
        chosen = in_url if in_url is not None else name
        if chosen is None:
            raise UsageError(
                f"{redact_url(text)!r} names a database, not a gallery: add ?gallery=NAME",
                details={"url": redact_url(text)},
            )
        return PgvectorGallery(url, chosen, create=create, contract_id=contract_id, cipher=cipher)
    path = Path(text).expanduser()
    if not path.exists() and not create:
        raise GalleryNotFoundError(f"no gallery at {path}", details={"path": str(path)})
    return SqliteGallery(path, create=create, contract_id=contract_id, name=name, cipher=cipher)


def open_named_gallery(
    name: str,
    *,
    database_url: str,
    create: bool = False,
    contract_id: str | None = None,
    cipher: RecordCipher | None = None,
) -> PgvectorGallery:
    """Gallery ``name`` in the database of ``FACEPRINT_DATABASE_URL`` / ``--db`` (``database_url``).

    Example:
        >>> open_named_gallery("staff", database_url=settings.database_url)  # doctest: +SKIP
        PgvectorGallery('postgresql://localhost/faces', 'staff')
    """
    if not is_database_url(database_url):
        raise UsageError(f"the database URL must start with postgresql://, got {redact_url(database_url)!r}")
    from faceprint.gallery.pgvector import PgvectorGallery

    url, in_url = split_gallery_url(database_url)
    if in_url is not None:
        raise UsageError(f"the database URL must not name a gallery (?gallery={in_url}); pass the name instead")
    return PgvectorGallery(url, name, create=create, contract_id=contract_id, cipher=cipher)


def resolve_gallery_ref(ref: str, *, gallery_dir: Path) -> str:
    """What a user's gallery reference means: a database URL or ``.sqlite`` path as given, a NAME as
    ``<gallery_dir>/NAME.sqlite``.

    Raises:
        UsageError: a NAME with characters outside letters, digits, ``.``, ``_`` and ``-``.

    Example:
        >>> resolve_gallery_ref("staff", gallery_dir=Path("/srv/galleries"))
        '/srv/galleries/staff.sqlite'
        >>> resolve_gallery_ref("postgresql://db/faces?gallery=staff", gallery_dir=Path("/srv/galleries"))
        'postgresql://db/faces?gallery=staff'
    """
    if is_database_url(ref) or ref.endswith(".sqlite"):
        return ref
    if not _NAME_RE.match(ref):
        raise UsageError(
            f"gallery {ref!r} is neither a NAME (1-100 letters, digits, '.', '_', '-'), a .sqlite path "
            "nor a postgresql:// URL"
        )
    return str(gallery_dir / f"{ref}.sqlite")
