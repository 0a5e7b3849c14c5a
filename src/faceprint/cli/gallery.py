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

from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from faceprint.analyze import check_face_mode
from faceprint.cli.common import (
    AssumeCroppedOption,
    BackendOption,
    CalibrationOption,
    ConfidentialOption,
    DetectorOption,
    FaceOption,
    NoFallbackOption,
    NoFlipOption,
    QuietOption,
    UpsampleOption,
    WorkersOption,
    current_settings,
    handle_errors,
    image_progress,
    open_analyzer,
    pipeline_config,
    print_json,
    stderr,
    stdout,
    use_confidential,
)
from faceprint.cli.gallery_migrate import migrate_command
from faceprint.enroll import enroll, plan_for_person, plan_from_folders
from faceprint.errors import EXIT_INPUT, EXIT_PARTIAL, UsageError
from faceprint.gallery import location
from faceprint.gallery.base import Gallery, resolve_person
from faceprint.gallery.sqlite import SqliteGallery
from faceprint.identify import IdentifyRun, identify_images
from faceprint.io.inputs import count_image_items, iter_image_items
from faceprint.pipeline import PipelineConfig

if TYPE_CHECKING:
    from faceprint.gallery.pgvector import PgvectorGallery

gallery_app = typer.Typer(
    name="gallery",
    help="Create galleries of known people and manage them (enrol, rename, merge, split, export, import, migrate).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
gallery_app.command("migrate")(migrate_command)


@gallery_app.callback()
@handle_errors
def gallery_options(confidential: ConfidentialOption = False) -> None:
    """Create galleries of known people and manage them (enrol, rename, merge, split, export, import, migrate)."""
    # Given before the subcommand (`faceprint gallery --confidential enroll …`), so every subcommand has it.
    use_confidential(confidential)


# --- where galleries live (the rules are faceprint.gallery.location's) -----------------------------------


def gallery_dir() -> Path:
    """The directory of named galleries (FACEPRINT_GALLERY_DIR, else the data home)."""
    return current_settings().gallery_dir


def gallery_path(name: str) -> Path:
    return location.gallery_path(name, settings=current_settings())


def open_gallery(name: str, *, create: bool = False) -> SqliteGallery | PgvectorGallery:
    return location.open_gallery(name, settings=current_settings(), create=create)


def _config(*, galleries: Sequence[Gallery] = (), **options: Any) -> PipelineConfig:
    """The pipeline config of the galleries' own embedding model."""
    return pipeline_config(model=location.model_for_galleries(galleries), **options)


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
    created, where = location.create_gallery(name, settings=current_settings(), contract_id=contract_id)
    with created as gallery:
        bound = f" (contract {gallery.contract_id})" if gallery.contract_id is not None else ""
        stdout().print(f"created gallery {name} at {where}{bound}", markup=False)


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
    no_fallback: NoFallbackOption = False,
    assume_cropped: AssumeCroppedOption = False,
    backend: BackendOption = "auto",
    no_flip: NoFlipOption = False,
    workers: WorkersOption = None,
    quiet: QuietOption = False,
) -> None:
    """Enrol people from photos showing exactly one face; others are skipped and listed, never guessed."""
    plan = plan_for_person(person, list(iter_image_items(inputs))) if person is not None else plan_from_folders(inputs)
    with open_gallery(name) as gallery:
        config = _config(
            galleries=[gallery],
            detector=detector,
            upsample=upsample,
            backend=backend,
            no_flip=no_flip,
            no_fallback=no_fallback,
            assume_cropped=assume_cropped,
        )
        total = sum(len(entry.items) for entry in plan)
        with (
            open_analyzer(config, workers=workers) as analyzer,
            image_progress(quiet=quiet or as_json, total=total) as progress,
        ):
            report = enroll(gallery, analyzer, plan, progress=progress)
    if as_json:
        print_json({"gallery": name, **report.to_dict()})
    else:
        added = report.templates_added
        stdout().print(f"enrolled {added} face(s) of {len(report.enrolled)} person(s) into {name}", markup=False)
        for entry in report.enrolled:
            stdout().print(f"  {entry.name} ({entry.person_id}): +{entry.templates_added}", markup=False)
        if report.skipped:
            stderr().print(f"skipped {len(report.skipped)} of {report.images} image(s):", markup=False)
            for skip in report.skipped:
                stderr().print(f"  {skip.image}: {skip.reason}", markup=False)
    if report.skipped:
        raise typer.Exit(code=EXIT_INPUT if not report.enrolled else EXIT_PARTIAL)
    if report.images == 0:
        raise typer.Exit(code=EXIT_INPUT)


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
        where = str(getattr(gallery, "path", name))  # a PostgreSQL gallery has a URL, not a path
        header = {"gallery": gallery.name, "contract_id": gallery.contract_id, "path": where}
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
    face: FaceOption = "all",
    calibration: CalibrationOption = None,
    detector: DetectorOption = "hog",
    upsample: UpsampleOption = 1,
    no_fallback: NoFallbackOption = False,
    assume_cropped: AssumeCroppedOption = False,
    backend: BackendOption = "auto",
    no_flip: NoFlipOption = False,
    workers: WorkersOption = None,
    quiet: QuietOption = False,
    confidential: ConfidentialOption = False,
) -> None:
    """Who is in these photos? Every face: box, person or unknown, similarity, distance, probability, top-k."""
    use_confidential(confidential)
    if min_similarity is not None and max_distance is not None:
        raise UsageError("give --min-similarity or --max-distance, not both")
    names = list(dict.fromkeys(galleries or []))
    if not names and index_unknowns is None:
        raise UsageError("give at least one --gallery to search (or --index-unknowns to collect unknown faces)")
    mode = check_face_mode(face)
    with ExitStack() as stack:
        settings = current_settings()
        opened = {n: location.enter_gallery(stack, n, settings=settings) for n in names}
        sink = None
        if index_unknowns is not None:
            sink = opened.get(index_unknowns) or location.enter_gallery(
                stack, index_unknowns, settings=settings, create=True
            )
        config = _config(
            galleries=list(opened.values()),
            detector=detector,
            upsample=upsample,
            backend=backend,
            no_flip=no_flip,
            calibration=calibration,
            no_fallback=no_fallback,
            assume_cropped=assume_cropped,
        )
        analyzer = stack.enter_context(open_analyzer(config, workers=workers))
        for gallery in [*opened.values(), *([sink] if sink is not None else [])]:
            location.check_gallery_contract(gallery, analyzer.spec)
        total = count_image_items(images)
        progress = stack.enter_context(image_progress(quiet=quiet or as_json, total=total))
        run = identify_images(
            iter_image_items(images),
            analyzer,
            list(opened.values()),
            face=mode,
            top_k=top_k,
            min_similarity=min_similarity,
            max_distance=max_distance,
            cluster_unknowns=cluster_unknowns,
            index_unknowns_into=sink,
            progress=progress,
            total=total,
        )
    if as_json:
        print_json(run.to_dict())
    else:
        _print_run(run)
    failed = len(run.failures)
    analysed = failed + len(run.images_without_faces) + len({face.image_id for face in run.faces})
    if analysed == 0:
        raise typer.Exit(code=EXIT_INPUT)
    if failed and failed == analysed:
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
