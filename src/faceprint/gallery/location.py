"""Where galleries live and how a user's gallery reference is opened: one rule for CLI, jobs and server.

A gallery is referred to by NAME (a file ``NAME.sqlite`` in the gallery directory of the
:class:`~faceprint.settings.Settings`) or by a path ending in ``.sqlite``. The model that searches or
enrols into a set of galleries is theirs (:func:`model_for_galleries`), and a pipeline of another
contract is refused (:func:`check_gallery_contract`).

Example:
    >>> from faceprint.settings import Settings

if TYPE_CHECKING:
    from faceprint.crypto import RecordCipher
    from faceprint.gallery.pgvector import PgvectorGallery
    >>> gallery_path("staff", settings=Settings(gallery_dir=Path("/srv/g")))
    PosixPath('/srv/g/staff.sqlite')
    >>> gallery_path("../etc/passwd", settings=Settings())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    faceprint.errors.UsageError: gallery name '../etc/passwd' must be 1-100 letters, digits, ...
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from faceprint.errors import ContractMismatchError, UsageError
from faceprint.gallery.base import Gallery, GalleryNotFoundError
from faceprint.gallery.sqlite import SqliteGallery
from faceprint.models.catalog import DLIB_RESNET_ID
from faceprint.models.spec import ModelSpec
from faceprint.settings import Settings

if TYPE_CHECKING:
    from faceprint.crypto import RecordCipher
    from faceprint.gallery.pgvector import PgvectorGallery

__all__ = [
    "check_gallery_contract",
    "create_gallery",
    "enter_gallery", "gallery_path", "model_for_galleries", "open_gallery"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def gallery_path(name: str, *, settings: Settings) -> Path:
    """``NAME`` → ``<gallery dir>/NAME.sqlite``; a path ending in ``.sqlite`` is used as is.

    Raises:
        UsageError: A name that is neither a plain name nor a ``.sqlite`` path.
    """
    if name.endswith(".sqlite"):
        return Path(name).expanduser()
    if not _NAME_RE.match(name):
        raise UsageError(
            f"gallery name {name!r} must be 1-100 letters, digits, '.', '_' or '-' (or a path to a .sqlite file)"
        )
    return settings.gallery_dir / f"{name}.sqlite"


def open_gallery(
    name: str,
    *,
    settings: Settings,
    create: bool = False,
    cipher: RecordCipher | Literal["settings"] | None = "settings",
) -> SqliteGallery | PgvectorGallery:
    """Open the gallery ``name`` refers to (a context manager), creating it only when asked.

    ``name`` is a ``postgresql://…?gallery=NAME`` URL, a ``.sqlite`` path, or a NAME: in the database of
    ``FACEPRINT_DATABASE_URL`` when that is set, else ``<gallery dir>/NAME.sqlite``. ``cipher``: the key of
    the settings by default (``FACEPRINT_ENCRYPTION_KEY``); a key rotation passes its keyring.

    Raises:
        GalleryNotFoundError: It does not exist and ``create`` is False.
        UsageError: A malformed name.
    """
    from faceprint.gallery.open import is_database_url, open_gallery_url, open_named_gallery

    sealing = _cipher(settings) if cipher == "settings" else cipher
    if is_database_url(name):
        return open_gallery_url(name, create=create, cipher=sealing)
    if settings.database_url is not None and not name.endswith(".sqlite"):
        if not _NAME_RE.match(name):
            raise UsageError(f"gallery name {name!r} must be 1-100 letters, digits, '.', '_' or '-'")
        return open_named_gallery(name, database_url=settings.database_url, create=create, cipher=sealing)
    path = gallery_path(name, settings=settings)
    if not path.exists() and not create:
        raise GalleryNotFoundError(
            f"no gallery {name!r} (looked for {path}); create it with: faceprint gallery create {name}",
            details={"gallery": name, "path": str(path)},
        )
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteGallery(path, create=create, cipher=sealing)


def create_gallery(
    name: str, *, settings: Settings, contract_id: str | None = None
) -> tuple[SqliteGallery | PgvectorGallery, str]:
    """Create a new, empty gallery where ``name`` points (see :func:`open_gallery`); and where that is.

    Raises:
        GalleryExistsError: There is one already.
        UsageError: A malformed name.
    """
    from faceprint.gallery.open import is_database_url, split_gallery_url
    from faceprint.postgres import redact_url

    if is_database_url(name) or (settings.database_url is not None and not name.endswith(".sqlite")):
        from faceprint.gallery.pgvector import PgvectorGallery

        if is_database_url(name):
            url, in_url = split_gallery_url(name)
            if in_url is None:
                raise UsageError(f"{redact_url(name)!r} names a database, not a gallery: add ?gallery=NAME")
            gallery_name = in_url
        else:
            if not _NAME_RE.match(name) or settings.database_url is None:
                raise UsageError(f"gallery name {name!r} must be 1-100 letters, digits, '.', '_' or '-'")
            url, gallery_name = settings.database_url, name
        created = PgvectorGallery.create(url, gallery_name, contract_id=contract_id, cipher=_cipher(settings))
        return created, f"{redact_url(url)} (gallery {gallery_name})"
    path = gallery_path(name, settings=settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteGallery.create(path, contract_id=contract_id, cipher=_cipher(settings)), str(path)


def _cipher(settings: Settings) -> RecordCipher | None:
    # FACEPRINT_ENCRYPTION_KEY(_FILE): templates and sources encrypted at rest (docs/privacy.md).
    from faceprint.crypto import cipher_from_settings

    return cipher_from_settings(settings)


def enter_gallery(
    stack: ExitStack, name: str, *, settings: Settings, create: bool = False
) -> SqliteGallery | PgvectorGallery:
    """:func:`open_gallery`, closed when ``stack`` closes (for commands that open several)."""
    gallery = open_gallery(name, settings=settings, create=create)
    stack.enter_context(gallery)
    return gallery


def model_for_galleries(galleries: Sequence[Gallery], *, default: str = DLIB_RESNET_ID) -> str:
    """The embedding model that must search (or enrol into) these galleries: the one they were built with.

    Raises:
        ContractMismatchError: The galleries hold faceprints of different models.

    Example:
        >>> model_for_galleries([])
        'dlib-resnet-v1'
    """
    models = {model for model in (getattr(g, "model_id", None) for g in galleries) if model is not None}
    if len(models) > 1:
        raise ContractMismatchError(f"the galleries hold faceprints of different models: {', '.join(sorted(models))}")
    return models.pop() if models else default


def check_gallery_contract(gallery: Gallery, spec: ModelSpec) -> None:
    """Refuse a pipeline whose faceprints are not comparable with the gallery's.

    Raises:
        ContractMismatchError: The gallery is bound to another contract.
    """
    bound = gallery.contract_id
    if bound is not None and bound != spec.contract_id:
        raise ContractMismatchError(
            f"gallery {gallery.name!r} holds faceprints of {bound!r}, but this pipeline makes "
            f"{spec.contract_id!r} ({spec.id})",
            details={"gallery": bound, "pipeline": spec.contract_id},
        )
