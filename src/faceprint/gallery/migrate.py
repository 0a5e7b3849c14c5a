"""Move a gallery between backends (SQLite file ↔ PostgreSQL), losslessly, and prove it.

The copy goes through the portable ``faceprint-gallery/1`` export (the one format both backends read and
write), so it carries exactly what an export does: every person (id, name, persistent-unknown flag), every
template (the float32 vector bit for bit, model id, package version, model options, source, enrolment
time) and the contract, also of a gallery without templates. Template ids are renumbered by the
destination. After writing, both galleries are read back and compared; any difference raises
:class:`GalleryMigrationError` and a destination created by the migration is removed again.

Example:
    >>> summary = migrate_gallery("staff.sqlite", "postgresql://db/faces?gallery=staff")  # doctest: +SKIP
    >>> (summary.persons, summary.templates, summary.unknowns)  # doctest: +SKIP
    (12, 57, 3)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from faceprint.errors import FaceprintError, UsageError
from faceprint.gallery.base import ExportTarget, Gallery, GalleryExistsError, ImportSummary, Template
from faceprint.postgres import is_database_url, redact_url

if TYPE_CHECKING:
    from faceprint.crypto import RecordCipher


class GalleryMigrationError(FaceprintError):
    """The copy read back differs from the source (nothing is left behind at a destination it created)."""

    code = "gallery_migration_mismatch"
    http_status = 500


class PortableGallery(Gallery, Protocol):
    """A gallery that writes and reads the portable export (both built-in backends do)."""

    def export_jsonl(self, path: ExportTarget) -> int: ...

    def import_jsonl(self, path: ExportTarget) -> ImportSummary: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class MigrationSummary:
    """What :func:`migrate_gallery` copied (and verified)."""

    source: str
    destination: str
    contract_id: str | None
    persons: int
    unknowns: int
    templates: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "contract_id": self.contract_id,
            "persons": self.persons,
            "unknowns": self.unknowns,
            "templates": self.templates,
            "verified": True,
        }


def _label(ref: PortableGallery | str | os.PathLike[str]) -> str:
    if isinstance(ref, (str, os.PathLike)):
        text = os.fspath(ref)
        return redact_url(text) if is_database_url(text) else text
    return repr(ref)


def _template_key(template: Template) -> tuple[Any, ...]:
    fp = template.faceprint
    return (
        template.person_id,
        fp.vector.astype("<f4", copy=False).tobytes(),
        fp.model_id,
        fp.package_version,
        json.dumps(dict(fp.model_options), sort_keys=True),
        template.source,
        template.created_at,
    )


def verify_same_gallery(source: Gallery, copy: Gallery) -> None:
    """Raise :class:`GalleryMigrationError` unless both hold the same contract, persons and templates.

    Templates are compared as a multiset of (person, vector bytes, model id, package version, options,
    source, created at): template ids may differ.

    Example:
        >>> verify_same_gallery(staff_sqlite, staff_postgres)  # doctest: +SKIP
    """
    problems: list[str] = []
    if source.contract_id != copy.contract_id:
        problems.append(f"contract {copy.contract_id!r} instead of {source.contract_id!r}")
    want = {(p.person_id, p.name, p.is_unknown, p.template_count) for p in source.persons()}
    got = {(p.person_id, p.name, p.is_unknown, p.template_count) for p in copy.persons()}
    if want != got:
        problems.append(f"{len(want - got)} person(s) missing or changed, {len(got - want)} unexpected")
    want_templates = Counter(_template_key(t) for t in source.templates())
    got_templates = Counter(_template_key(t) for t in copy.templates())
    if want_templates != got_templates:
        missing = sum((want_templates - got_templates).values())
        extra = sum((got_templates - want_templates).values())
        problems.append(f"{missing} template(s) missing or changed, {extra} unexpected")
    if problems:
        raise GalleryMigrationError(
            f"the copy of gallery {source.name!r} differs from it: " + "; ".join(problems),
            details={"problems": problems},
        )


def migrate_gallery(
    src: PortableGallery | str | os.PathLike[str],
    dst: PortableGallery | str | os.PathLike[str],
    *,
    cipher: RecordCipher | None = None,
) -> MigrationSummary:
    """Copy gallery ``src`` into a new, empty gallery ``dst`` and verify the copy.

    The copy passes through memory (an export held in RAM), never through a file: an encrypted gallery's
    vectors never reach the disk in clear.

    Args:
        src: an open gallery, an SQLite path or a ``postgresql://…?gallery=NAME`` URL (must exist).
        dst: the same kinds; a path or URL must not exist yet (it is created), an open gallery must be empty.
        cipher: the key of galleries opened or created here (``FACEPRINT_ENCRYPTION_KEY``): needed to read
            an encrypted source; a destination created with it is encrypted.

    Raises:
        GalleryExistsError: ``dst`` already exists (as a path or URL) or holds persons.
        GalleryMigrationError: the copy read back differs (a destination created here is removed again).
        UsageError: ``src`` and ``dst`` are the same gallery.

    Example:
        >>> migrate_gallery("postgresql://db/faces?gallery=staff", "staff-copy.sqlite").templates  # doctest: +SKIP
        57
    """
    from faceprint.gallery.open import open_gallery_url

    if isinstance(src, (str, os.PathLike)) and isinstance(dst, (str, os.PathLike)) and os.fspath(src) == os.fspath(dst):
        raise UsageError("source and destination are the same gallery")
    with contextlib.ExitStack() as stack:
        source: PortableGallery
        if isinstance(src, (str, os.PathLike)):
            source = stack.enter_context(contextlib.closing(open_gallery_url(src, cipher=cipher)))
        else:
            source = src
        created = isinstance(dst, (str, os.PathLike))
        target: PortableGallery
        if isinstance(dst, (str, os.PathLike)):
            target = _create_destination(dst, cipher)
            stack.callback(target.close)
        else:
            target = dst
            if target.persons() or target.template_count():
                raise GalleryExistsError(
                    f"destination gallery {target.name!r} is not empty", details={"gallery": target.name}
                )
        try:
            export = io.BytesIO()
            source.export_jsonl(export)
            export.seek(0)
            target.import_jsonl(export)
            verify_same_gallery(source, target)
        except BaseException:
            if created:
                _remove(target, dst)
            raise
        persons = source.persons()
        return MigrationSummary(
            source=_label(src),
            destination=_label(dst),
            contract_id=source.contract_id,
            persons=len(persons),
            unknowns=sum(p.is_unknown for p in persons),
            templates=source.template_count(),
        )


def _create_destination(ref: str | os.PathLike[str], cipher: RecordCipher | None) -> PortableGallery:
    from faceprint.gallery.open import open_gallery_url, split_gallery_url

    text = os.fspath(ref)
    if is_database_url(text):
        from faceprint.gallery.pgvector import list_galleries

        url, name = split_gallery_url(text)
        if name is not None and name in list_galleries(url):
            raise GalleryExistsError(
                f"a gallery {name!r} already exists in {redact_url(url)}", details={"gallery": name}
            )
    elif Path(text).expanduser().exists():
        raise GalleryExistsError(f"a gallery already exists at {text}", details={"path": text})
    return open_gallery_url(text, create=True, cipher=cipher)


def _remove(target: PortableGallery, ref: PortableGallery | str | os.PathLike[str]) -> None:
    """Undo a destination the migration created (best effort: the original error is the one to report)."""
    from faceprint.gallery.pgvector import PgvectorGallery

    with contextlib.suppress(Exception):
        if isinstance(target, PgvectorGallery):
            target.drop()
            return
        target.close()
        if isinstance(ref, (str, os.PathLike)):
            path = Path(os.fspath(ref)).expanduser()
            for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                leftover.unlink(missing_ok=True)
