"""The ``faceprint`` command: no logic here, only calls into the library.

Exit codes: 0 all done; 1 some items failed but output was written; 2 usage error; 3 no input could be
read; 4 model problem (missing or corrupt weights); 70 internal error. See docs/cli.md.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from faceprint import __version__
from faceprint.analyze import AnalyzeOptions, check_face_mode
from faceprint.cli.common import (
    AssumeCroppedOption,
    BackendOption,
    CalibrationOption,
    CliContext,
    DetectorOption,
    FaceOption,
    ModelOption,
    NoFallbackOption,
    NoFlipOption,
    QuietOption,
    UpsampleOption,
    WorkersOption,
    handle_errors,
    image_progress,
    open_analyzer,
    pipeline_config,
    print_json,
    raise_on_sigterm,
    stderr,
    stdout,
)
from faceprint.cli.models_cmd import models_add_command
from faceprint.errors import EXIT_INPUT, EXIT_PARTIAL, FaceprintError
from faceprint.io.atomic import open_atomic
from faceprint.io.inputs import count_image_items, iter_image_items
from faceprint.io.output import check_output_path
from faceprint.models.catalog import DLIB_RESNET_ID
from faceprint.settings import load_settings
from faceprint.verify import compare_inputs


def _version_callback(value: bool) -> None:
    if value:
        stdout().print(f"faceprint {__version__}")
        raise typer.Exit()


@handle_errors
def main(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """faceprint: face recognition you can measure."""
    # Settings are read from FACEPRINT_* once, here, and reach commands through the context (a caller such
    # as a test may have given its own).
    if not isinstance(ctx.obj, CliContext):
        ctx.obj = CliContext(settings=load_settings())


def _exit_for(failed: int, total: int) -> None:
    if total == 0:
        raise typer.Exit(code=EXIT_INPUT)
    if failed and failed == total:
        raise typer.Exit(code=EXIT_INPUT)
    if failed:
        raise typer.Exit(code=EXIT_PARTIAL)


@handle_errors
def detect(
    images: Annotated[list[Path], typer.Argument(help="Images, folders (recursive) or TAR/TGZ archives.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    face: FaceOption = "all",
    detector: DetectorOption = "hog",
    upsample: UpsampleOption = 1,
    no_fallback: NoFallbackOption = False,
    assume_cropped: AssumeCroppedOption = False,
    workers: WorkersOption = None,
    quiet: QuietOption = False,
) -> None:
    """Find faces: boxes (pixels and 0-1), landmarks, scores, quality; the selected face first."""
    config = pipeline_config(
        detector=detector, upsample=upsample, no_fallback=no_fallback, assume_cropped=assume_cropped
    )
    options = AnalyzeOptions(face=check_face_mode(face), embed=False)
    results: list[dict[str, Any]] = []
    failed = 0
    total = count_image_items(images)
    with (
        open_analyzer(config, workers=workers) as analyzer,
        image_progress(quiet=quiet or as_json, total=total) as progress,
    ):
        for result in analyzer.analyze(iter_image_items(images), options=options, progress=progress, total=total):
            if not result.ok:
                failed += 1
                results.append({"image": result.key, "error": result.error_dict()})
                continue
            results.append(
                {
                    "image": result.key,
                    "size_wh": list(result.size_wh or ()),
                    "faces": [f.to_dict(result.size_wh) for f in result.faces],
                }
            )
    if as_json:
        print_json(results)
    else:
        table = Table("image", "face", "box (x1,y1,x2,y2)", "score", "detector", "flags")
        for entry in results:
            image = escape(str(entry["image"]))
            if "error" in entry:
                table.add_row(image, "-", f"[red]{escape(str(entry['error']['code']))}[/]", "", "", "")
                continue
            faces_list: list[dict[str, Any]] = entry["faces"]
            if not faces_list:
                table.add_row(image, "-", "no face", "", "", "")
            for index, found in enumerate(faces_list):
                box = ", ".join(f"{v:.0f}" for v in found["bbox_xyxy"])
                table.add_row(
                    image,
                    str(index),
                    box,
                    f"{found['score']:.2f}",
                    escape(str(found["detector"])),
                    escape(",".join(found["flags"])),
                )
        stdout().print(table)
    _exit_for(failed, len(results))


@handle_errors
def embed(
    images: Annotated[list[Path], typer.Argument(help="Images, folders (recursive) or TAR/TGZ archives.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="JSON Lines file to write.")],
    face: FaceOption = "all",
    largest: Annotated[bool, typer.Option("--largest", help="Same as --face largest.")] = False,
    detector: DetectorOption = "hog",
    upsample: UpsampleOption = 1,
    no_fallback: NoFallbackOption = False,
    assume_cropped: AssumeCroppedOption = False,
    backend: BackendOption = "auto",
    no_flip: NoFlipOption = False,
    model: ModelOption = DLIB_RESNET_ID,
    workers: WorkersOption = None,
    quiet: QuietOption = False,
) -> None:
    """Write one faceprint per face as JSON Lines (image, face index, box, quality, faceprint)."""
    check_output_path(output, inputs=images)
    config = pipeline_config(
        model=model,
        detector=detector,
        upsample=upsample,
        backend=backend,
        no_flip=no_flip,
        no_fallback=no_fallback,
        assume_cropped=assume_cropped,
    )
    options = AnalyzeOptions(face="largest" if largest else check_face_mode(face))
    failed = 0
    images_seen = 0
    faces_written = 0
    total = count_image_items(images)
    with (
        open_analyzer(config, workers=workers) as analyzer,
        open_atomic(output) as handle,
        image_progress(quiet=quiet, total=total) as progress,
    ):
        for result in analyzer.analyze(iter_image_items(images), options=options, progress=progress, total=total):
            images_seen += 1
            if not result.ok:
                failed += 1
                handle.write(_json_line({"image": result.key, "error": result.error_dict()}))
                continue
            for index, found in enumerate(result.faces):
                if found.faceprint is None:
                    continue
                record = {
                    "image": result.key,
                    "face_index": index,
                    "detection": found.detection.to_dict(),
                    "faceprint": found.faceprint.to_dict(),
                }
                handle.write(_json_line(record))
                faces_written += 1
    stderr().print(
        f"wrote {faces_written} faceprints from {images_seen - failed}/{images_seen} images to {output}", markup=False
    )
    _exit_for(failed, images_seen)


def _json_line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record) + "\n").encode("utf-8")


@handle_errors
def compare(
    a: Annotated[Path, typer.Argument(help="Image or faceprint JSON.")],
    b: Annotated[Path, typer.Argument(help="Image or faceprint JSON.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    face: FaceOption = "primary",
    calibration: CalibrationOption = None,
    detector: DetectorOption = "hog",
    upsample: UpsampleOption = 1,
    no_fallback: NoFallbackOption = False,
    assume_cropped: AssumeCroppedOption = False,
    backend: BackendOption = "auto",
    no_flip: NoFlipOption = False,
    model: ModelOption = DLIB_RESNET_ID,
) -> None:
    """Are A and B the same person? Similarity, calibrated probability and the decision."""
    mode = check_face_mode(face)
    config = pipeline_config(
        model=model,
        detector=detector,
        upsample=upsample,
        backend=backend,
        calibration=calibration,
        no_flip=no_flip,
        no_fallback=no_fallback,
        assume_cropped=assume_cropped,
    )
    with open_analyzer(config, workers=1) as analyzer:
        result = compare_inputs(analyzer, a, b, face=mode)
    comparison = result.comparison
    if as_json:
        print_json({"a": str(a), "b": str(b), **result.to_dict()})
        return
    verdict = "[bold green]same person[/]" if comparison.is_match else "[bold yellow]different people[/]"
    flags = f"  flags {escape(','.join(comparison.flags))}" if getattr(comparison, "flags", ()) else ""
    stdout().print(
        f"{verdict}  probability {comparison.probability:.1%}  similarity {comparison.similarity:.4f}  "
        f"(threshold {comparison.threshold:.4f}, model {escape(result.model_id)}){flags}"
    )


@handle_errors
def models(
    ctx: typer.Context,
    thresholds: Annotated[bool, typer.Option("--thresholds", help="Show operating thresholds and FAR points.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Installed models (built-in and registered), their files verified by sha256."""
    if ctx.invoked_subcommand is not None:
        return
    from faceprint.models.status import model_statuses

    rows = [row.to_dict() for row in model_statuses()]
    if as_json:
        print_json(rows)
        return
    table = Table("model", "task", "status", "license")
    for row in rows:
        status = "[green]verified[/]" if row["status"] == "ok" else f"[red]{row['status']}[/]"
        table.add_row(str(row["id"]), str(row["task"]), status, str(row["license"]))
    stdout().print(table)
    if thresholds:
        for row in rows:
            if row["task"] != "embedding":
                continue
            stdout().print(f"\n[bold]{row['id']}[/] (contract {row['contract_id']})")
            stdout().print(f"  default threshold (min cosine similarity): {row['default_threshold']}")
            far = row["far_thresholds"]
            if isinstance(far, dict):
                for key, value in far.items():
                    stdout().print(f"  FAR {key}: min similarity {value}")
            calibration = row["calibration"]
            if isinstance(calibration, dict):
                stdout().print(f"  calibration: {json.dumps(calibration)}")


@handle_errors
def demo(
    images: Annotated[list[Path] | None, typer.Argument(help="Your own photos to pair up (optional).")] = None,
    output_dir: Annotated[Path, typer.Option("--output-dir", help="Where the demo files go.")] = Path("demo-output"),
) -> None:
    """Run the main job, batch pair scoring, on a small demo dataset and show the results."""
    import tarfile

    from faceprint.batch.pairs import PairsOptions, run_pairs_job
    from faceprint.demo import build_demo_dataset

    dataset = build_demo_dataset(output_dir, images or ())
    console = stdout()
    console.print(f"demo dataset: {dataset.archive} ({dataset.rows} pairs; {dataset.source})")
    results = output_dir / "results.tar.gz"
    result = run_pairs_job([dataset.archive], results, options=PairsOptions(details=True))
    with tarfile.open(results) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if member.isfile() and member.name.endswith(("output.csv", "processing.error")):
                handle = tar.extractfile(member)
                text = handle.read().decode("utf-8") if handle is not None else ""
                console.print(f"\n[bold]{member.name}[/]")
                console.print(text.rstrip(), markup=False)
    console.print(f"\n{result.summary()}")
    console.print(f"results: [bold]{results.resolve()}[/]")
    console.print("(one folder per dataset: output.csv, processing.error when something failed, run.json)")
    console.print("score your own datasets with: faceprint pairs DATASET... -o results.tar.gz")


_COMMANDS_ELSEWHERE: dict[str, tuple[str, str]] = {
    "pairs": ("faceprint.cli.pairs", "pairs"),
    "evaluate": ("faceprint.cli.evaluate", "evaluate"),
    "calibrate": ("faceprint.cli.evaluate", "calibrate"),
    "gallery": ("faceprint.cli.gallery", "gallery_app"),
    "identify": ("faceprint.cli.gallery", "identify"),
    "video": ("faceprint.cli.video", "video"),
    "serve": ("faceprint.cli.serve", "serve"),
    "worker": ("faceprint.cli.serve", "worker"),
    "keys": ("faceprint.cli.keys", "keys_app"),
    "audit": ("faceprint.cli.audit", "audit"),
}
"""Commands defined in other modules: imported only when the app needs them (start-up time of one command)."""


def build_app(*, only: str | None = None) -> typer.Typer:
    """The ``faceprint`` app; with ``only``, just that command of :data:`_COMMANDS_ELSEWHERE` is imported.

    Example:
        >>> sorted(c.name for c in build_app(only="detect").registered_commands if c.name)[:3]
        ['compare', 'demo', 'detect']
    """
    app = typer.Typer(
        name="faceprint",
        help="Face detection, faceprints and calibrated face comparison, offline.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.callback()(main)
    for command in (detect, embed, compare, demo):
        app.command(name=command.__name__)(command)
    models_app = typer.Typer(name="models", help="Installed models; `models add` registers an ONNX model.")
    models_app.callback(invoke_without_command=True)(models)
    models_app.command(name="add")(models_add_command)
    app.add_typer(models_app, name="models")
    for name, (module, attribute) in _COMMANDS_ELSEWHERE.items():
        if only is not None and name != only:
            continue
        value = getattr(importlib.import_module(module), attribute)
        if isinstance(value, typer.Typer):
            app.add_typer(value, name=name)
        else:
            app.command(name=name)(value)
    return app


def __getattr__(name: str) -> typer.Typer:
    # `from faceprint.cli.main import app` (tests, embedding in other tools) gets the whole app, built on use.
    if name == "app":
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _command_asked_for(argv: list[str]) -> str | None:
    """The command name on the command line when it is one of :data:`_COMMANDS_ELSEWHERE`, else None."""
    for arg in argv:
        if arg.startswith("-"):
            return None  # a root option (--help, --version): the whole app
        return arg if arg in _COMMANDS_ELSEWHERE else "" if arg in _OWN_COMMANDS else None
    return None


_OWN_COMMANDS = frozenset({"detect", "embed", "compare", "demo", "models"})


def run() -> None:
    """Console-script entry point."""
    raise_on_sigterm()
    only = _command_asked_for(sys.argv[1:])
    # A command defined here needs none of the others; one defined elsewhere needs only its module.
    app = build_app(only=only) if only is not None else build_app()
    try:
        app()
    except FaceprintError as err:  # pragma: no cover - raised before a command's own handler runs
        stderr().print(f"error [{err.code}] {err.message}", markup=False)
        raise SystemExit(err.exit_code) from None
