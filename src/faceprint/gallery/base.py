"""The Gallery protocol and the value types of identification.

A *gallery* holds persons, each with one or more *templates* (enrolled faceprints) of ONE embedding
contract. Searching a gallery compares a probe faceprint with every template; a person's similarity is
the maximum over their templates.

Example:
    >>> hit = SearchHit(person_id="p-1", name="Jane Doe", similarity=0.93, distance=0.374)
    >>> result = IdentifyResult(matches=(hit,), best=hit, min_similarity=0.88)
    >>> (result.is_unknown, result.best.name)
    (False, 'Jane Doe')
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from faceprint.errors import (
    ContractMismatchError,
    FaceprintError,
    FaceprintFormatError,
    InputError,
    InvalidArgumentError,
    UsageError,
)
from faceprint.types import Faceprint, FaceQuality

if TYPE_CHECKING:
    from faceprint.compare import Comparator

UNKNOWN_ID_PREFIX = "unknown-"
"""Person ids of persistent unknowns (see :func:`faceprint.cluster.index_unknowns`) start with this."""


def new_person_id(*, is_unknown: bool = False) -> str:
    """A fresh stable person id: ``p-<12 hex>``, or ``unknown-<12 hex>`` for a persistent unknown.

    Example:
        >>> new_person_id(is_unknown=True).startswith(UNKNOWN_ID_PREFIX)
        True
    """
    return (UNKNOWN_ID_PREFIX if is_unknown else "p-") + uuid.uuid4().hex[:12]


def quality_text(quality: FaceQuality | None) -> str | None:
    """A template's face quality as the gallery stores it (JSON text), ``None`` when it was not measured.

    Example:
        >>> quality_text(None) is None
        True
    """
    return None if quality is None else json.dumps(quality.to_dict(), sort_keys=True, separators=(",", ":"))


def quality_from_text(text: object, where: str) -> FaceQuality | None:
    """The stored face quality of a template: ``None`` (NULL) for a template enrolled before quality was kept.

    Raises:
        GalleryFormatError: the stored text is not a face quality.

    Example:
        >>> q = FaceQuality(40.0, 1.0, "hog@0", 3.0, 1.0, 200.0, 0.5, 0.0)
        >>> quality_from_text(quality_text(q), "template 1") == q
        True
    """
    if text is None:
        return None
    try:
        data = json.loads(text) if isinstance(text, str | bytes) else None
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return FaceQuality.from_dict(data)
    except (ValueError, FaceprintError) as err:
        raise GalleryFormatError(f"{where} has an unreadable face quality: {err}") from err


class PersonNotFoundError(InputError):
    """No person with that id (or name) in the gallery."""

    code = "person_not_found"
    http_status = 404


class AmbiguousPersonError(UsageError):
    """A name given where an id is expected matches several persons."""

    code = "ambiguous_person"


class TemplateNotFoundError(InputError):
    """No template with that id, or it belongs to another person."""

    code = "template_not_found"
    http_status = 404


class GalleryNotFoundError(InputError):
    """The gallery file does not exist (and creation was not asked for)."""

    code = "gallery_not_found"
    http_status = 404


class GalleryExistsError(UsageError):
    """Creating a gallery where one already exists."""

    code = "gallery_exists"


class GalleryFormatError(InputError):
    """A gallery file or export that cannot be read (wrong format, newer schema, corrupt rows)."""

    code = "gallery_format"


@dataclass(frozen=True, slots=True)
class Person:
    """One identity in a gallery.

    ``is_unknown`` marks a persistent unknown: a face cluster stored so that later runs recognise it,
    not yet given a real name. Renaming it makes it known.
    """

    person_id: str
    name: str
    template_count: int
    is_unknown: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "name": self.name,
            "template_count": self.template_count,
            "is_unknown": self.is_unknown,
        }


@dataclass(frozen=True, slots=True, eq=False)
class Template:
    """One enrolled faceprint of a person, with where it came from."""

    template_id: int
    person_id: str
    faceprint: Faceprint
    source: str | None = None
    """Free text, e.g. the image path it was enrolled from."""
    created_at: str | None = None
    """ISO 8601 UTC."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "template_id": self.template_id,
            "person_id": self.person_id,
            "source": self.source,
            "created_at": self.created_at,
            "model_id": self.faceprint.model_id,
            "contract_id": self.faceprint.contract_id,
        }


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A candidate person for a probe faceprint."""

    person_id: str
    name: str
    similarity: float
    """Max cosine similarity over the person's templates; higher = more alike."""
    distance: float
    """``sqrt(2 - 2 * similarity)``, Euclidean distance of unit vectors; lower = more alike."""
    probability: float | None = None
    """P(same person) from a caller-supplied calibration, or None when none was given."""
    is_unknown: bool = False
    """The person is a persistent unknown (see :class:`Person`)."""
    gallery: str = ""
    """Name of the gallery the person lives in (searches may span several)."""
    template_quality: FaceQuality | None = None
    """Face quality of the person's most similar template; None for a template enrolled before galleries kept
    quality (it is then judged with the reference sigmoid, like a faceprint without quality)."""
    min_similarity: float | None = None
    """The cut-off for this candidate: the search's cut-off moved to the probability it stands for under this
    (probe quality, template quality) pair's sigmoid (see :class:`IdentifyResult`); None when the search had
    no quality-aware comparator."""

    @property
    def passes(self) -> bool | None:
        """Whether this candidate reaches its own cut-off (None without a per-candidate cut-off)."""
        return None if self.min_similarity is None else self.similarity >= self.min_similarity

    def to_dict(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "name": self.name,
            "similarity": round(self.similarity, 6),
            "distance": round(self.distance, 6),
            "probability": None if self.probability is None else round(self.probability, 6),
            "is_unknown": self.is_unknown,
            "gallery": self.gallery,
            "min_similarity": None if self.min_similarity is None else round(self.min_similarity, 6),
            "template_quality": None if self.template_quality is None else self.template_quality.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class IdentifyResult:
    """The answer of a search for one probe: the top-k candidates and the accepted one, if any."""

    matches: tuple[SearchHit, ...]
    """Top-k persons, most similar first, whether or not they pass the cut-off."""
    best: SearchHit | None
    """The accepted candidate, else None (the probe is unknown). Without a quality-aware comparator it is
    ``matches[0]`` when its similarity reaches ``min_similarity``; with one, each candidate has its own cut-off
    (:attr:`SearchHit.min_similarity`: the similarity at which the (probe, template) pair's sigmoid reaches
    the probability that ``min_similarity`` gives the reference pair), and the best is the candidate of the
    highest P(same) among those that pass it."""
    min_similarity: float
    """The cut-off used, for the reference pair (a ``max_distance`` is converted to this)."""

    @property
    def is_unknown(self) -> bool:
        return self.best is None

    @property
    def top(self) -> SearchHit | None:
        """The most similar person even when below the cut-off (None for an empty gallery)."""
        return self.matches[0] if self.matches else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "best": None if self.best is None else self.best.to_dict(),
            "matches": [hit.to_dict() for hit in self.matches],
            "min_similarity": self.min_similarity,
        }


@dataclass(frozen=True, slots=True, eq=False)
class GallerySnapshot:
    """A consistent read of a gallery's templates, ready for indexing.

    Rows of ``vectors`` are the raw template vectors, grouped by person: ``person_rows[i]`` is the index
    into ``persons`` of row i.
    """

    name: str
    contract_id: str | None
    persons: tuple[Person, ...]
    vectors: npt.NDArray[np.float32]
    person_rows: npt.NDArray[np.int64]
    revision: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)
    qualities: tuple[FaceQuality | None, ...] = ()
    """Face quality of each row's template (None: not stored); empty means none is known."""

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.person_rows.shape != (self.vectors.shape[0],):
            raise InvalidArgumentError(
                f"vectors must be (n, d) and person_rows (n,), got {self.vectors.shape} and {self.person_rows.shape}"
            )
        if self.qualities and len(self.qualities) != self.vectors.shape[0]:
            raise InvalidArgumentError(f"{len(self.qualities)} qualities for {self.vectors.shape[0]} template rows")
        # Snapshots are cached and shared between searches: nobody may change them in place.
        self.vectors.setflags(write=False)
        self.person_rows.setflags(write=False)

    @property
    def template_count(self) -> int:
        return int(self.vectors.shape[0])


@runtime_checkable
class Gallery(Protocol):
    """A store of persons and their templates for one embedding contract.

    Implementations: :class:`faceprint.gallery.sqlite.SqliteGallery` (default, embedded) and
    :class:`faceprint.gallery.pgvector.PgvectorGallery` (PostgreSQL + pgvector, searched in the database).
    """

    @property
    def name(self) -> str: ...

    @property
    def contract_id(self) -> str | None:
        """The embedding contract of every template, or None while the gallery is empty and unbound."""
        ...

    def persons(self) -> list[Person]: ...

    def get_person(self, person_id: str) -> Person: ...

    def find_persons(self, name: str) -> list[Person]: ...

    def templates(self, person_id: str | None = None) -> list[Template]: ...

    def template_count(self) -> int: ...

    def add_person(self, name: str, *, person_id: str | None = None, is_unknown: bool = False) -> Person: ...

    def enroll(
        self, person_id: str, faceprints: Sequence[Faceprint], *, sources: Sequence[str | None] | None = None
    ) -> list[int]: ...

    def remove_person(self, person_id: str) -> None: ...

    def remove_template(self, template_id: int) -> None: ...

    def rename_person(self, person_id: str, name: str) -> Person: ...

    def merge_persons(self, into_id: str, from_ids: Sequence[str]) -> Person: ...

    def split_person(
        self, person_id: str, template_ids: Sequence[int], *, name: str, is_unknown: bool = False
    ) -> Person: ...

    def snapshot(self) -> GallerySnapshot: ...

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
        """Top-k persons and the accepted one (or unknown) for every probe, searched where the gallery lives.

        SQLite galleries search in process (numpy, or FAISS when large); PostgreSQL galleries search in the
        database. Several galleries at once: :func:`faceprint.gallery.search.search`.
        """
        ...


@dataclass(frozen=True, slots=True)
class PersonCandidate:
    """A person found by a search, with their exact similarity (max over their templates), before any cut-off."""

    gallery: str
    person_id: str
    name: str
    is_unknown: bool
    similarity: float
    template_quality: FaceQuality | None = None
    """Face quality of the template that gave ``similarity`` (None: not stored)."""


@runtime_checkable
class DatabaseSearch(Protocol):
    """A gallery whose own engine finds the nearest persons, so that no copy of its templates is downloaded.

    :class:`faceprint.gallery.search.MultiGalleryIndex` asks such galleries for their candidates instead of
    reading a :class:`GallerySnapshot`, and merges them with those of in-process galleries.
    """

    @property
    def name(self) -> str: ...

    @property
    def contract_id(self) -> str | None: ...

    @property
    def engine_key(self) -> str:
        """Galleries with equal keys live in one database and are searched together, in one query."""
        ...

    def template_count(self) -> int: ...

    def person_count(self) -> int: ...

    def dim(self) -> int | None:
        """The template dimension, None while no template was enrolled."""
        ...

    @property
    def searches_in_database(self) -> bool:
        """False when the database cannot search it (encrypted templates): then it is searched in process."""
        ...

    def nearest_persons(
        self, unit_queries: npt.NDArray[np.float32], *, top_k: int, together: Sequence[DatabaseSearch] = ()
    ) -> list[list[PersonCandidate]]:
        """For each (unit-length) query row, up to ``top_k`` persons of this gallery and of ``together``, best first."""
        ...


def check_same_contract(contract_ids: Sequence[tuple[str, str | None]]) -> str | None:
    """The one contract shared by named galleries or probes, ignoring unbound (None) ones.

    Raises:
        ContractMismatchError: two of them differ.

    Example:
        >>> check_same_contract([("a", "m:1"), ("b", None), ("c", "m:1")])
        'm:1'
    """
    found: tuple[str, str] | None = None
    for label, contract_id in contract_ids:
        if contract_id is None:
            continue
        if found is None:
            found = (label, contract_id)
        elif contract_id != found[1]:
            raise ContractMismatchError(
                f"{label} uses embedding contract {contract_id!r} but {found[0]} uses {found[1]!r}; "
                "faceprints of different contracts cannot be compared",
                details={found[0]: found[1], label: contract_id},
            )
    return None if found is None else found[1]


class GalleryBusyError(FaceprintError):
    """Another process held the gallery's write lock for longer than the busy timeout."""

    code = "gallery_busy"
    http_status = 503


def resolve_person(gallery: Gallery, ref: str) -> Person:
    """The person a user means by ``ref``: an exact person id, else a unique name (exact, then case-insensitive).

    Raises:
        PersonNotFoundError: nothing matches.
        AmbiguousPersonError: several persons carry that name (use the id).

    Example:
        >>> resolve_person(gallery, "Jane Doe").person_id  # doctest: +SKIP
        'p-3f9a2c1b7d4e'
    """
    try:
        return gallery.get_person(ref)
    except PersonNotFoundError:
        pass
    found = gallery.find_persons(ref)
    if not found:
        wanted = ref.casefold()
        found = [person for person in gallery.persons() if person.name.casefold() == wanted]
    if not found:
        raise PersonNotFoundError(f"no person {ref!r} in gallery {gallery.name!r}", details={"person": ref})
    if len(found) > 1:
        ids = ", ".join(person.person_id for person in found)
        raise AmbiguousPersonError(
            f"{len(found)} persons are named {ref!r} in gallery {gallery.name!r}; use an id: {ids}",
            details={"person": ref, "person_ids": [person.person_id for person in found]},
        )
    return found[0]


# --- export / import, the same file for every backend -------------------------------------------------

EXPORT_FORMAT = "faceprint-gallery/1"
"""First-line ``format`` of the JSONL export (see :func:`write_export`)."""

_MAX_TEXT = 256


def clean_text(value: str, what: str) -> str:
    """A person's name or id as stored: stripped, 1-256 printable characters.

    Raises:
        UsageError: empty, too long, or with control characters.

    Example:
        >>> clean_text("  Jane Doe ", "a person's name")
        'Jane Doe'
    """
    text = value.strip()
    if not text or len(text) > _MAX_TEXT or any(ord(c) < 32 for c in text):
        raise UsageError(f"{what} must be 1-{_MAX_TEXT} printable characters, got {value!r}")
    return text


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What a gallery's ``import_jsonl`` did."""

    persons_added: int
    templates_added: int
    templates_skipped: int
    """Templates already present (same person, identical vector): re-importing a file adds nothing."""


@dataclass(frozen=True, slots=True)
class RotationSummary:
    """What a gallery's ``rotate_encryption`` did."""

    templates_rotated: int
    templates_current: int
    """Templates already under the new key (a rotation that is run again after a crash skips them)."""


def template_record(faceprint: Faceprint, source: str | None, created_at: str | None) -> dict[str, Any]:
    """One template as an export holds it (its faceprint, with quality when known, source and date)."""
    return {"faceprint": faceprint.to_dict(), "source": source, "created_at": created_at}


ExportTarget = str | os.PathLike[str] | BinaryIO
"""Where an export is written or read: a file path, or an open binary file (e.g. in memory, so that a
migration of an encrypted gallery never writes clear vectors to disk)."""


def _export_label(target: ExportTarget) -> str:
    return os.fspath(target) if isinstance(target, (str, os.PathLike)) else "<in-memory export>"


def write_export(
    path: ExportTarget,
    *,
    gallery: str,
    contract_id: str | None,
    model_id: str | None,
    persons: Sequence[Person],
    templates: Mapping[str, Sequence[dict[str, Any]]],
    exported_at: str,
) -> int:
    """Write a gallery's portable JSON-lines export; returns the number of templates written.

    Line 1 is a header (``format``, ``contract_id``, ``model_id``, counts); then one line per person with
    their templates (:func:`template_record`, keyed by person id in ``templates``). Written to a temp
    file and renamed into place, so a crash never leaves half an export. Every backend writes this one
    format, so an export of one imports into the other.

    Example:
        >>> write_export("team.jsonl", gallery="team", contract_id=None, model_id=None, persons=[],
        ...              templates={}, exported_at="2026-01-01T00:00:00Z")  # doctest: +SKIP
        0
    """
    from faceprint import __version__
    from faceprint.io.atomic import open_atomic

    count = sum(len(templates.get(person.person_id, ())) for person in persons)
    header = {
        "format": EXPORT_FORMAT,
        "gallery": gallery,
        "contract_id": contract_id,
        "model_id": model_id,
        "persons": len(persons),
        "templates": count,
        "exported_at": exported_at,
        "package_version": __version__,
    }

    def write(handle: BinaryIO) -> None:
        handle.write((json.dumps(header, sort_keys=True) + "\n").encode())
        for person in persons:
            record = {
                "person_id": person.person_id,
                "name": person.name,
                "is_unknown": person.is_unknown,
                "templates": list(templates.get(person.person_id, ())),
            }
            handle.write((json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode())

    if not isinstance(path, (str, os.PathLike)):
        write(path)
        return count
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open_atomic(target) as handle:
        write(handle)
    return count


def export_faceprints(record: Mapping[str, Any], path: ExportTarget) -> list[Faceprint]:
    """The faceprints of one person record of an export (checked by :func:`read_export`).

    Raises:
        GalleryFormatError: a template is not a faceprint.
    """
    try:
        return [Faceprint.from_dict(t["faceprint"]) for t in record["templates"]]
    except (FaceprintFormatError, ValueError) as err:
        person = record["person_id"]
        raise GalleryFormatError(
            f"{_export_label(path)}: person {person!r}: a template is not a faceprint: {err}"
        ) from err


def read_export(path: ExportTarget) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Parse a gallery export: ``(header, person records)``.

    Raises:
        GalleryFormatError: not an export this faceprint understands, or a malformed line.

    Example:
        >>> header, persons = read_export("team.jsonl")  # doctest: +SKIP
        >>> header["contract_id"]  # doctest: +SKIP
        'dlib-resnet-v1:5c1e0e3b9a47'
    """
    source = _export_label(path)
    try:
        if isinstance(path, (str, os.PathLike)):
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        else:
            lines = path.read().decode("utf-8").splitlines()
    except FileNotFoundError as err:
        raise GalleryNotFoundError(f"no export file at {source}", details={"path": str(source)}) from err
    except (OSError, UnicodeDecodeError) as err:
        raise GalleryFormatError(f"cannot read gallery export {source}: {err}") from err
    if not lines:
        raise GalleryFormatError(f"{source} is empty, not a gallery export")
    try:
        header = json.loads(lines[0])
        if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
            raise GalleryFormatError(f"{source} is not a {EXPORT_FORMAT} export")
        contract_id = header.get("contract_id")
        if contract_id is not None and (not isinstance(contract_id, str) or not contract_id.strip()):
            raise GalleryFormatError(f"{source}:1: contract_id must be a non-empty string, not {contract_id!r}")
        records: list[dict[str, Any]] = []
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            record = json.loads(line)
            check_person_record(record, f"{source}:{number}", contract_id)
            records.append(record)
    except json.JSONDecodeError as err:
        raise GalleryFormatError(f"{source} is not valid JSON lines: {err}") from err
    return header, records


def check_person_record(record: Any, where: str, contract_id: str | None) -> None:
    """Every field the import stores has the type it needs: a bad value is refused before any write."""
    if not isinstance(record, dict) or not isinstance(record.get("templates"), list):
        raise GalleryFormatError(f"{where}: not a person record")
    if "person_id" not in record or "name" not in record:
        raise GalleryFormatError(f"{where}: person record without person_id or name")
    for key in ("person_id", "name"):
        if not isinstance(record[key], str):
            raise GalleryFormatError(f"{where}: {key} must be text, not {type(record[key]).__name__}")
    if not isinstance(record.get("is_unknown", False), bool):
        raise GalleryFormatError(f"{where}: is_unknown must be true or false")
    if record["templates"] and contract_id is None:
        # An unbound export has no templates; templates with a null contract would bind the gallery to "None".
        raise GalleryFormatError(f"{where}: templates in an export whose contract_id is null")
    for index, template in enumerate(record["templates"], start=1):
        at = f"{where}: template {index}"
        fp = template.get("faceprint") if isinstance(template, dict) else None
        if not isinstance(fp, dict) or fp.get("contract_id") != contract_id:
            raise GalleryFormatError(f"{at}: no faceprint of the export's contract")
        for key in ("source", "created_at"):
            value = template.get(key)
            if value is not None and not isinstance(value, str):
                raise GalleryFormatError(f"{at}: {key} must be text or null, not {type(value).__name__}")
