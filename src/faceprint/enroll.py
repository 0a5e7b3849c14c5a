"""Enrolment: the rule for adding people's faces to a gallery, for the CLI, the job service and the SDK.

The rule: a photo enrols a person only when it shows exactly one face. A photo with no face, several
faces, or that cannot be read is skipped and reported with a code (``no_face``, ``several_faces``, or
the read error), never guessed. Photos go through the engine (:class:`~faceprint.analyze.Analyzer`), so
enrolment gets the same detection, quality, worker pool and error handling as every other command.

A plan says whose photos are which: :func:`plan_for_person` (all photos show one named person) or
:func:`plan_from_folders` (one sub-folder per person, named after the folder).

Example:
    >>> plan = plan_for_person("Jane Doe", [AnalyzeItem("jane.jpg", Path("jane.jpg"))])
    >>> plan[0].person_ref, len(plan[0].items)
    ('Jane Doe', 1)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceprint.analyze import AnalyzeItem, AnalyzeOptions, AnalyzeProgress, Analyzer
from faceprint.errors import InputError, NoFaceError, UsageError
from faceprint.gallery.base import Gallery, Person, resolve_person
from faceprint.gallery.location import check_gallery_contract
from faceprint.io.inputs import iter_image_items
from faceprint.types import Faceprint

__all__ = [
    "SEVERAL_FACES",
    "EnrolledPerson",
    "EnrollmentPlan",
    "EnrollmentReport",
    "SkippedImage",
    "enroll",
    "plan_for_person",
    "plan_from_folders",
]

SEVERAL_FACES = "several_faces"
"""The skip code of a photo that shows more than one face."""


@dataclass(frozen=True, slots=True)
class EnrollmentPlan:
    """Photos of one person: an existing person id or name, or the name of a new person."""

    person_ref: str
    items: tuple[AnalyzeItem, ...]


@dataclass(frozen=True, slots=True)
class SkippedImage:
    image: str
    code: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"image": self.image, "code": self.code, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class EnrolledPerson:
    person_id: str
    name: str
    templates_added: int

    def to_dict(self) -> dict[str, Any]:
        return {"person_id": self.person_id, "name": self.name, "templates_added": self.templates_added}


@dataclass(frozen=True, slots=True)
class EnrollmentReport:
    """What :func:`enroll` did: persons that got templates, and the photos skipped with their reason."""

    enrolled: tuple[EnrolledPerson, ...]
    skipped: tuple[SkippedImage, ...]
    images: int
    model_id: str
    contract_id: str

    @property
    def templates_added(self) -> int:
        return sum(person.templates_added for person in self.enrolled)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "contract_id": self.contract_id,
            "images": self.images,
            "enrolled": [person.to_dict() for person in self.enrolled],
            "skipped": [skip.to_dict() for skip in self.skipped],
        }


def plan_for_person(person_ref: str, items: Sequence[AnalyzeItem]) -> list[EnrollmentPlan]:
    """Every photo shows the person ``person_ref`` (an id, an existing name, or a new person's name)."""
    if not person_ref.strip():
        raise UsageError("a person's name must not be empty")
    return [EnrollmentPlan(person_ref=person_ref, items=tuple(items))]


def plan_from_folders(folders: Sequence[Path]) -> list[EnrollmentPlan]:
    """One person per sub-folder of each folder, named after the sub-folder; its images (recursive) theirs.

    Raises:
        UsageError: A path that is not a folder, or folders without sub-folders.
    """
    plan: list[EnrollmentPlan] = []
    for folder in folders:
        if not folder.is_dir():
            raise UsageError(
                f"{folder} is not a folder: give --person NAME with image files, or folders of one "
                "sub-folder per person"
            )
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            plan.append(EnrollmentPlan(person_ref=sub.name, items=tuple(iter_image_items([sub]))))
    if not plan:
        raise UsageError("no person sub-folders found in " + ", ".join(str(p) for p in folders))
    return plan


def _person_for(gallery: Gallery, ref: str) -> Person:
    """The existing person ``ref`` names (id or unique name), else a new person called ``ref``."""
    resolve_or_add = getattr(gallery, "resolve_or_add_person", None)
    if resolve_or_add is not None:  # one transaction, so concurrent first enrolments make one person
        person: Person = resolve_or_add(ref)
        return person
    try:
        return resolve_person(gallery, ref)
    except InputError:  # not found; an ambiguous name is a UsageError and propagates
        return gallery.add_person(ref)


def enroll(
    gallery: Gallery,
    analyzer: Analyzer,
    plan: Sequence[EnrollmentPlan],
    *,
    progress: Callable[[AnalyzeProgress], None] | None = None,
) -> EnrollmentReport:
    """Enrol the plan's photos that show exactly one face; skip and report the others.

    Raises:
        ContractMismatchError: The gallery holds faceprints of another model than the analyzer's.

    Example:
        >>> with Analyzer() as analyzer, open_gallery("staff", settings=Settings()) as gallery:  # doctest: +SKIP
        ...     report = enroll(gallery, analyzer, plan_for_person("Jane", items))
        >>> report.templates_added, [s.code for s in report.skipped]                              # doctest: +SKIP
        (2, ['several_faces'])
    """
    spec = analyzer.spec
    check_gallery_contract(gallery, spec)
    items = [item for entry in plan for item in entry.items]
    owner = [index for index, entry in enumerate(plan) for _ in entry.items]
    prints: list[list[Faceprint]] = [[] for _ in plan]
    sources: list[list[str | None]] = [[] for _ in plan]
    skipped: list[SkippedImage] = []
    # "all": every face is detected and embedded, so a second person in the photo is seen, not ignored.
    for result in analyzer.analyze(items, options=AnalyzeOptions(face="all"), progress=progress):
        if result.error_code == NoFaceError.code:
            skipped.append(SkippedImage(result.key, NoFaceError.code, "no face found"))
        elif result.error_code is not None:
            skipped.append(SkippedImage(result.key, result.error_code, str(result.error_message)))
        elif len(result.faceprints) > 1:
            skipped.append(
                SkippedImage(
                    result.key,
                    SEVERAL_FACES,
                    f"{len(result.faceprints)} faces found; enrol from a photo of this person alone",
                )
            )
        else:
            prints[owner[result.index]].append(result.faceprints[0])
            sources[owner[result.index]].append(result.key)
    enrolled: list[EnrolledPerson] = []
    for entry, person_prints, person_sources in zip(plan, prints, sources, strict=True):
        if not person_prints:
            continue
        target = _person_for(gallery, entry.person_ref)
        template_ids = gallery.enroll(target.person_id, person_prints, sources=person_sources)
        enrolled.append(EnrolledPerson(target.person_id, target.name, len(template_ids)))
    return EnrollmentReport(
        enrolled=tuple(enrolled),
        skipped=tuple(skipped),
        images=len(items),
        model_id=spec.id,
        contract_id=spec.contract_id,
    )
