"""``faceprint gallery …`` (manage galleries) and ``faceprint identify`` (who is in these photos).

Galleries are SQLite files named ``NAME.sqlite`` in the gallery directory: ``$FACEPRINT_GALLERY_DIR``,
else ``$XDG_DATA_HOME/faceprint/galleries``, else ``~/.local/share/faceprint/galleries``. Anywhere a
gallery NAME is expected, a path ending in ``.sqlite`` works too.

Example:
    $ faceprint gallery create staff
    $ faceprint gallery enroll staff --person "Jane Doe" jane1.jpg jane2.jpg
    $ faceprint gallery enroll staff people/            # one sub-folder per person
    $ faceprint identify party/*.jpg --gallery staff --cluster-unknowns --json
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from faceprint.cli.common import (
    BackendOption,
    CalibrationOption,
    DetectorOption,
    NoFlipOption,
    UpsampleOption,
    handle_errors,
    pipeline_config,
    print_json,
    stderr,
    stdout,
)
from faceprint.errors import EXIT_INPUT, EXIT_PARTIAL, ContractMismatchError, InputError, NoFaceError, UsageError
from faceprint.gallery.base import GalleryNotFoundError, Person, resolve_person
from faceprint.gallery.sqlite import SqliteGallery
from faceprint.identify import IdentifyRun, identify_images
from faceprint.io.image import load_image
from faceprint.models.catalog import DLIB_RESNET_ID
from faceprint.pipeline import Pipeline, load_pipeline
from faceprint.types import Faceprint

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

gallery_app = typer.Typer(
    name="gallery",
    help="Create galleries of known people and manage them (enrol, rename, merge, split, export, import).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# --- where galleries live --------------------------------------------------------------------------------


def gallery_dir() -> Path:
    """The directory of named galleries (read from the environment on each call, never at import)."""
    override = os.environ.get("FACEPRINT_GALLERY_DIR")
    if override:
        return Path(override).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME")
    base = Path(data_home).expanduser() if data_home else Path.home() / ".local" / "share"
    return base / "faceprint" / "galleries"


def gallery_path(name: str) -> Path:
    """``NAME`` → ``<gallery dir>/NAME.sqlite``; a path ending in ``.sqlite`` is used as is."""
    if name.endswith(".sqlite"):
        return Path(name).expanduser()
    if not _NAME_RE.match(name):
        raise UsageError(
            f"gallery name {name!r} must be 1-100 letters, digits, '.', '_' or '-' (or a path to a .sqlite file)"
        )
    return gallery_dir() / f"{name}.sqlite"


def open_gallery(name: str, *, create: bool = False) -> SqliteGallery:
    path = gallery_path(name)
    if not path.exists() and not create:
        raise GalleryNotFoundError(
            f"no gallery {name!r} (looked for {path}); create it with: faceprint gallery create {name}",
            details={"gallery": name, "path": str(path)},
        )
    return SqliteGallery(path, create=create)


def _image_files(inputs: Sequence[Path]) -> Iterator[Path]:
    """Files as given; directories expanded to the images inside (recursively, sorted)."""
    for item in inputs:
        if item.is_dir():
            yield from sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield item


def _pipeline(
    *,
    detector: str,
    upsample: int,
    backend: str,
    no_flip: bool,
    calibration: Path | None = None,
    galleries: Sequence[SqliteGallery] = (),
) -> Pipeline:
    """The pipeline of the galleries' embedding model (the default model for a gallery not yet bound)."""
    models = {g.model_id for g in galleries if g.model_id is not None}
    if len(models) > 1:
        raise ContractMismatchError(f"the galleries hold faceprints of different models: {', '.join(sorted(models))}")
    model = models.pop() if models else DLIB_RESNET_ID
    return load_pipeline(
        pipeline_config(
            model=model, detector=detector, upsample=upsample, backend=backend, no_flip=no_flip, calibration=calibration
        )
    )


def _check_contract(gallery: SqliteGallery, pipeline: Pipeline) -> None:
    bound = gallery.contract_id
    if bound is not None and bound != pipeline.spec.contract_id:
        raise ContractMismatchError(
            f"gallery {gallery.name!r} holds faceprints of {bound!r}, but this pipeline makes "
            f"{pipeline.spec.contract_id!r} ({pipeline.spec.id})",
            details={"gallery": bound, "pipeline": pipeline.spec.contract_id},
        )


# --- gallery commands ------------------------------------------------------------------------------------

NameArgument = Annotated[str, typer.Argument(help="Gallery name (or path to a .sqlite file).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@gallery_app.command("create")
@handle_errors
def create_command(
    name: NameArgument,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Bind the gallery to this embedding model now (else the first enrolment does)."),
    ] = None,
) -> None:
    """Create an empty gallery."""
    contract_id: str | None = None
    if model is not None:
        from faceprint.models.catalog import builtin_specs

        spec = builtin_specs().get(model)
        if spec is None or spec.task != "embedding":
            raise UsageError(f"unknown embedding model {model!r}")
        contract_id = spec.contract_id
    path = gallery_path(name)
    with SqliteGallery.create(path, contract_id=contract_id) as gallery:
        bound = f" (contract {gallery.contract_id})" if gallery.contract_id is not None else ""
        stdout().print(f"created gallery {name} at {path}{bound}", markup=False)


@dataclass(frozen=True, slots=True)
class _Skipped:
    image: str
    reason: str
    code: str


@gallery_app.command("enroll")
@handle_errors
def enroll_command(
    name: NameArgument,
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Images of --person (files or folders), or without --person: folders of one sub-folder per person."
        ),
    ],
    person: Annotated[
        str | None, typer.Option("--person", help="Whose images these are (a name, or an existing person id).")
    ] = None,
    as_json: JsonOption = False,
    detector: DetectorOption = "hog",
    upsample: UpsampleOption = 1,
    backend: BackendOption = "auto",
    no_flip: NoFlipOption = False,
) -> None:
    """Enrol people from photos showing exactly one face; others are skipped and listed, never guessed."""
    plan: list[tuple[str, list[Path]]] = []
    if person is not None:
        plan.append((person, list(_image_files(inputs))))
    else:
        for folder in inputs:
            if not folder.is_dir():
                raise UsageError(
                    f"{folder} is not a folder: give --person NAME with image files, or folders of one "
                    "sub-folder per person"
                )
            for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
                plan.append((sub.name, list(_image_files([sub]))))
        if not plan:
            raise UsageError("no person sub-folders found in " + ", ".join(str(p) for p in inputs))
    with open_gallery(name) as gallery:
        pipeline = _pipeline(
            detector=detector, upsample=upsample, backend=backend, no_flip=no_flip, galleries=[gallery]
        )
        _check_contract(gallery, pipeline)
        enrolled: list[dict[str, Any]] = []
        skipped: list[_Skipped] = []
        for person_ref, images in plan:
            prints: list[Faceprint] = []
            sources: list[str | None] = []
            for image_path in images:
                faceprint, problem = _single_face(pipeline, image_path)
                if problem is not None:
                    skipped.append(problem)
                elif faceprint is not None:
                    prints.append(faceprint)
                    sources.append(str(image_path))
            if not prints:
                continue
            target = _person_for(gallery, person_ref)
            template_ids = gallery.enroll(target.person_id, prints, sources=sources)
            enrolled.append({"person_id": target.person_id, "name": target.name, "templates_added": len(template_ids)})
    total = sum(len(images) for _, images in plan)
    if as_json:
        print_json(
            {
                "gallery": name,
                "contract_id": pipeline.spec.contract_id,
                "model_id": pipeline.spec.id,
                "enrolled": enrolled,
                "skipped": [{"image": s.image, "code": s.code, "reason": s.reason} for s in skipped],
            }
        )
    else:
        added = sum(int(e["templates_added"]) for e in enrolled)
        stdout().print(f"enrolled {added} face(s) of {len(enrolled)} person(s) into {name}", markup=False)
        for entry in enrolled:
            stdout().print(f"  {entry['name']} ({entry['person_id']}): +{entry['templates_added']}", markup=False)
        if skipped:
            stderr().print(f"skipped {len(skipped)} of {total} image(s):", markup=False)
            for s in skipped:
                stderr().print(f"  {s.image}: {s.reason}", markup=False)
    if skipped:
        raise typer.Exit(code=EXIT_INPUT if not enrolled else EXIT_PARTIAL)
    if total == 0:
        raise typer.Exit(code=EXIT_INPUT)


def _single_face(pipeline: Pipeline, path: Path) -> tuple[Faceprint | None, _Skipped | None]:
    try:
        faces = pipeline.embed_faces(load_image(path, limits=pipeline.config.limits))
    except NoFaceError:
        faces = []
    except InputError as err:
        return None, _Skipped(str(path), err.message, err.code)
    if not faces:
        return None, _Skipped(str(path), "no face found", "no_face")
    if len(faces) > 1:
        return None, _Skipped(
            str(path), f"{len(faces)} faces found; enrol from a photo of this person alone", "several_faces"
        )
    return faces[0].faceprint, None


def _person_for(gallery: SqliteGallery, ref: str) -> Person:
    """The existing person ``ref`` names (id or unique name), else a new person called ``ref``."""
    try:
        return resolve_person(gallery, ref)
    except InputError:  # not found; an ambiguous name is a UsageError and propagates
        return gallery.add_person(ref)


@gallery_app.command("list")
@handle_errors
def list_command(as_json: JsonOption = False) -> None:
    """The galleries in the gallery directory, with their size and contract."""
    directory = gallery_dir()
    rows = []
    for path in sorted(directory.glob("*.sqlite")) if directory.is_dir() else []:
        with SqliteGallery.open(path) as gallery:
            persons = gallery.persons()
            rows.append(
                {
                    "name": path.stem,
                    "path": str(path),
                    "persons": len(persons),
                    "unknown_persons": sum(p.is_unknown for p in persons),
                    "templates": gallery.template_count(),
                    "contract_id": gallery.contract_id,
                }
            )
    if as_json:
        print_json(rows)
        return
    if not rows:
        stdout().print(f"no galleries in {directory}", markup=False)
        return
    table = Table("gallery", "persons", "unknown", "templates", "contract")
    for row in rows:
        table.add_row(
            escape(str(row["name"])),
            str(row["persons"]),
            str(row["unknown_persons"]),
            str(row["templates"]),
            str(row["contract_id"] or "-"),
        )
    stdout().print(table)


@gallery_app.command("show")
@handle_errors
def show_command(
    name: NameArgument,
    person: Annotated[str | None, typer.Option("--person", help="Show this person's templates.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The persons of a gallery (or one person's templates)."""
    with open_gallery(name) as gallery:
        if person is not None:
            target = resolve_person(gallery, person)
            templates = [t.to_dict() for t in gallery.templates(target.person_id)]
            if as_json:
                print_json({"person": target.to_dict(), "templates": templates})
                return
            stdout().print(
                f"{target.name} ({target.person_id}){' [unknown]' if target.is_unknown else ''}", markup=False
            )
            table = Table("template", "source", "created")
            for t in templates:
                table.add_row(str(t["template_id"]), escape(str(t["source"] or "-")), str(t["created_at"]))
            stdout().print(table)
            return
        persons = gallery.persons()
        header = {"gallery": gallery.name, "contract_id": gallery.contract_id, "path": str(gallery.path)}
    if as_json:
        print_json({**header, "persons": [p.to_dict() for p in persons]})
        return
    stdout().print(
        f"{header['gallery']}: {len(persons)} person(s), contract {header['contract_id'] or '-'}", markup=False
    )
    table = Table("person id", "name", "templates", "unknown")
    for p in persons:
        table.add_row(escape(p.person_id), escape(p.name), str(p.template_count), "yes" if p.is_unknown else "")
    stdout().print(table)


@gallery_app.command("remove-person")
@handle_errors
def remove_person_command(
    name: NameArgument,
    person: Annotated[str, typer.Argument(help="Person id or name.")],
) -> None:
    """Remove a person and all their templates."""
    with open_gallery(name) as gallery:
        target = resolve_person(gallery, person)
        gallery.remove_person(target.person_id)
    stdout().print(f"removed {target.name} ({target.person_id}, {target.template_count} template(s))", markup=False)


@gallery_app.command("rename-person")
@handle_errors
def rename_person_command(
    name: NameArgument,
    person: Annotated[str, typer.Argument(help="Person id or name (e.g. unknown-3f9a2c1b7d4e).")],
    new_name: Annotated[str, typer.Argument(help="The new name; a persistent unknown becomes known.")],
) -> None:
    """Rename a person (naming a persistent unknown makes it known; its id stays)."""
    with open_gallery(name) as gallery:
        target = resolve_person(gallery, person)
        renamed = gallery.rename_person(target.person_id, new_name)
    stdout().print(f"{target.name} ({renamed.person_id}) is now {renamed.name}", markup=False)


@gallery_app.command("merge")
@handle_errors
def merge_command(
    name: NameArgument,
    into: Annotated[str, typer.Argument(help="The person who stays (id or name).")],
    others: Annotated[list[str], typer.Argument(help="Persons merged into it (ids or names).")],
) -> None:
    """Merge persons: their templates move to INTO and they are removed."""
    with open_gallery(name) as gallery:
        target = resolve_person(gallery, into)
        sources = [resolve_person(gallery, ref).person_id for ref in others]
        merged = gallery.merge_persons(target.person_id, sources)
    stdout().print(
        f"merged {len(sources)} person(s) into {merged.name} ({merged.person_id}): {merged.template_count} template(s)",
        markup=False,
    )


@gallery_app.command("split")
@handle_errors
def split_command(
    name: NameArgument,
    person: Annotated[str, typer.Argument(help="The person to split (id or name).")],
    templates: Annotated[
        list[int], typer.Option("--template", "-t", help="Template id to move (repeat); see `gallery show --person`.")
    ],
    new_name: Annotated[str, typer.Option("--name", help="Name of the new person.")],
) -> None:
    """Move some templates of a person to a new person (e.g. a cluster that mixed two people)."""
    with open_gallery(name) as gallery:
        target = resolve_person(gallery, person)
        new = gallery.split_person(target.person_id, templates, name=new_name)
    stdout().print(f"moved {new.template_count} template(s) to {new.name} ({new.person_id})", markup=False)


@gallery_app.command("export")
@handle_errors
def export_command(
    name: NameArgument,
    output: Annotated[Path, typer.Argument(help="JSON Lines file to write (portable, carries the contract id).")],
) -> None:
    """Export a gallery to a portable JSON Lines file."""
    with open_gallery(name) as gallery:
        count = gallery.export_jsonl(output)
        persons = len(gallery.persons())
    stdout().print(f"exported {persons} person(s), {count} template(s) to {output}", markup=False)


@gallery_app.command("import")
@handle_errors
def import_command(
    name: NameArgument,
    source: Annotated[Path, typer.Argument(help="A file written by `faceprint gallery export`.")],
) -> None:
    """Import an export into a gallery (created if missing); templates already present are skipped."""
    with open_gallery(name, create=True) as gallery:
        summary = gallery.import_jsonl(source)
    stdout().print(
        f"imported {summary.persons_added} new person(s), {summary.templates_added} template(s) into {name}"
        f" ({summary.templates_skipped} already present)",
        markup=False,
    )


# --- identify --------------------------------------------------------------------------------------------


def identification_min_similarity(pipeline: Pipeline) -> float:
    """The default search cut-off: the model's threshold for a 1e-3 false-accept rate per comparison.

    A probe is compared with every enrolled person, so the 1:1 operating threshold would let strangers
    through in proportion to the gallery size (docs/identification.md); without a FAR 1e-3 figure the
    1:1 threshold is used.
    """
    return pipeline.spec.far_thresholds.get("1e-3", pipeline.comparator.threshold)


@handle_errors
def identify(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    galleries: Annotated[
        list[str] | None, typer.Option("--gallery", "-g", help="Gallery to search (repeat for several).")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Candidate persons listed per face.")] = 3,
    min_similarity: Annotated[
        float | None,
        typer.Option(
            "--min-similarity",
            help="Accept a person at or above this cosine similarity "
            "(default: the model's FAR 1e-3 threshold, stricter than 1:1 since a probe meets every person).",
        ),
    ] = None,
    max_distance: Annotated[
        float | None, typer.Option("--max-distance", help="… or at or below this distance (not both).")
    ] = None,
    cluster_unknowns: Annotated[
        bool, typer.Option("--cluster-unknowns", help="Group unmatched faces across all images: Unknown #1, #2, …")
    ] = False,
    index_unknowns: Annotated[
        str | None,
        typer.Option(
            "--index-unknowns", help="Store each group of unmatched faces in this gallery (created if missing)."
        ),
    ] = None,
    as_json: JsonOption = False,
    calibration: CalibrationOption = None,
    detector: DetectorOption = "hog",
    upsample: UpsampleOption = 1,
    backend: BackendOption = "auto",
    no_flip: NoFlipOption = False,
) -> None:
    """Who is in these photos? Every face: box, person or unknown, similarity, distance, probability, top-k."""
    if min_similarity is not None and max_distance is not None:
        raise UsageError("give --min-similarity or --max-distance, not both")
    names = list(dict.fromkeys(galleries or []))
    if not names and index_unknowns is None:
        raise UsageError("give at least one --gallery to search (or --index-unknowns to collect unknown faces)")
    paths = list(_image_files(images))
    if not paths:
        raise UsageError("no images given (folders are searched for .jpg, .jpeg, .png, .webp, .bmp)")
    with ExitStack() as stack:
        opened = {n: stack.enter_context(open_gallery(n)) for n in names}
        sink = None
        if index_unknowns is not None:
            sink = opened.get(index_unknowns) or stack.enter_context(open_gallery(index_unknowns, create=True))
        pipeline = _pipeline(
            detector=detector,
            upsample=upsample,
            backend=backend,
            no_flip=no_flip,
            calibration=calibration,
            galleries=list(opened.values()),
        )
        for gallery in [*opened.values(), *([sink] if sink is not None else [])]:
            _check_contract(gallery, pipeline)
        run = identify_images(
            paths,
            pipeline,
            list(opened.values()),
            load=partial(load_image, limits=pipeline.config.limits),
            top_k=top_k,
            min_similarity=min_similarity,
            max_distance=max_distance,
            probability=pipeline.comparator.probability,
            default_min_similarity=identification_min_similarity(pipeline),
            cluster_unknowns=cluster_unknowns,
            index_unknowns_into=sink,
        )
    if as_json:
        print_json(run.to_dict())
    else:
        _print_run(run)
    failed = len(run.failures)
    if failed and failed == len(paths):
        raise typer.Exit(code=EXIT_INPUT)
    if failed:
        raise typer.Exit(code=EXIT_PARTIAL)


def _print_run(run: IdentifyRun) -> None:
    table = Table("image", "face", "box (x1,y1,x2,y2)", "who", "similarity", "distance", "probability", "top matches")
    for face in run.faces:
        box = "-" if face.bbox_xyxy is None else ", ".join(f"{v:.0f}" for v in face.bbox_xyxy)
        who = face.label if not face.is_unknown or face.person_id is None else f"{face.label} (unnamed)"
        table.add_row(
            escape(face.image_id),
            str(face.face_index),
            box,
            escape(who),
            "-" if face.similarity is None else f"{face.similarity:.4f}",
            "-" if face.distance is None else f"{face.distance:.4f}",
            "-" if face.probability is None else f"{face.probability:.1%}",
            escape(", ".join(f"{hit.name} {hit.similarity:.3f}" for hit in face.matches)),
        )
    for image in run.images_without_faces:
        table.add_row(escape(image), "-", "no face", "", "", "", "", "")
    stdout().print(table)
    stdout().print(
        f"cut-off: min similarity {run.min_similarity if run.min_similarity is not None else '-'}  "
        f"model {run.model_id or '-'}  galleries {', '.join(run.galleries) or '-'}",
        markup=False,
    )
    for person in run.new_unknowns:
        stdout().print(f"new unknown: {person.person_id} ({person.template_count} template(s))", markup=False)
    for failure in run.failures:
        stderr().print(f"error [{failure.code}] {failure.message}", markup=False)
