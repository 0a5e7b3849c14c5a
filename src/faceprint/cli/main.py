"""The ``faceprint`` command: no logic here, only calls into the library.

Exit codes: 0 all done; 1 some items failed but output was written; 2 usage error; 3 no input could be
read; 4 model problem (missing or corrupt weights); 70 internal error. See docs/cli.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from faceprint import __version__
from faceprint.cli.common import (
    BackendOption,
    CalibrationOption,
    DetectorOption,
    ModelOption,
    NoFallbackOption,
    NoFlipOption,
    UpsampleOption,
    handle_errors,
    pipeline_config,
    print_json,
    stderr,
    stdout,
)
from faceprint.cli.evaluate import calibrate, evaluate
from faceprint.cli.gallery import gallery_app, identify
from faceprint.cli.models_cmd import models_add_command
from faceprint.cli.pairs import pairs
from faceprint.errors import EXIT_INPUT, EXIT_PARTIAL, FaceprintError, InputError
from faceprint.io.atomic import open_atomic
from faceprint.io.image import load_image
from faceprint.models.catalog import DLIB_RESNET_ID
from faceprint.pipeline import Pipeline, load_pipeline
from faceprint.types import Faceprint

app = typer.Typer(
    name="faceprint",
    help="Face detection, faceprints and calibrated face comparison, offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        stdout().print(f"faceprint {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """faceprint: face recognition you can measure."""


@app.command()
@handle_errors
def detect(
    images: Annotated[list[Path], typer.Argument(help="Image files (JPEG, PNG, WebP, BMP).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    detector: DetectorOption = "hog",
    upsample: UpsampleOption = 1,
    no_fallback: NoFallbackOption = False,
) -> None:
    """Find faces: boxes (pixels and 0-1), landmarks, scores."""
    pipeline = load_pipeline(pipeline_config(detector=detector, upsample=upsample, no_fallback=no_fallback))
    results: list[dict[str, Any]] = []
    failed = 0
    for path in images:
        try:
            image = load_image(path, limits=pipeline.config.limits)
            detections = pipeline.detect_faces(image)
        except InputError as err:
            failed += 1
            results.append({"image": str(path), "error": err.to_dict()})
            continue
        size_wh = (image.shape[1], image.shape[0])
        faces = []
        for d in detections:
            face = d.to_dict()
            face["bbox_normalized"] = [round(v, 4) for v in d.normalized_bbox(size_wh)]
            faces.append(face)
        results.append({"image": str(path), "size_wh": list(size_wh), "faces": faces})
    if as_json:
        print_json(results)
    else:
        table = Table("image", "face", "box (x1,y1,x2,y2)", "score", "detector", "flags")
        for result in results:
            if "error" in result:
                table.add_row(str(result["image"]), "-", f"[red]{result['error']['code']}[/]", "", "", "")
                continue
            faces_list: list[dict[str, Any]] = result["faces"]
            if not faces_list:
                table.add_row(str(result["image"]), "-", "no face", "", "", "")
            for index, face in enumerate(faces_list):
                box = ", ".join(f"{v:.0f}" for v in face["bbox_xyxy"])
                table.add_row(
                    str(result["image"]),
                    str(index),
                    box,
                    f"{face['score']:.2f}",
                    face["detector"],
                    ",".join(face["flags"]),
                )
        stdout().print(table)
    _exit_for(failed, len(images))


def _exit_for(failed: int, total: int) -> None:
    if failed and failed == total:
        raise typer.Exit(code=EXIT_INPUT)
    if failed:
        raise typer.Exit(code=EXIT_PARTIAL)


@app.command()
@handle_errors
def embed(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="JSON Lines file to write.")],
    largest: Annotated[bool, typer.Option("--largest", help="Only the largest face of each image.")] = False,
    detector: DetectorOption = "hog",
    upsample: UpsampleOption = 1,
    backend: BackendOption = "auto",
    no_flip: NoFlipOption = False,
    model: ModelOption = DLIB_RESNET_ID,
) -> None:
    """Write one faceprint per face as JSON Lines (image, face index, box, faceprint)."""
    pipeline = load_pipeline(
        pipeline_config(model=model, detector=detector, upsample=upsample, backend=backend, no_flip=no_flip)
    )
    failed = 0
    faces_written = 0
    with open_atomic(output) as handle:
        for path in images:
            try:
                image = load_image(path, limits=pipeline.config.limits)
                faces = pipeline.embed_faces(image, largest_only=largest)
            except InputError as err:
                failed += 1
                handle.write(_json_line({"image": str(path), "error": err.to_dict()}))
                continue
            if not faces:
                failed += 1
                error = {"code": "no_face", "message": f"{path}: no face found", "details": {}}
                handle.write(_json_line({"image": str(path), "error": error}))
            for index, face in enumerate(faces):
                face_print = face.faceprint
                if face_print is None:
                    continue
                record = {
                    "image": str(path),
                    "face_index": index,
                    "detection": face.detection.to_dict(),
                    "faceprint": face_print.to_dict(),
                }
                handle.write(_json_line(record))
                faces_written += 1
    stderr().print(f"wrote {faces_written} faceprints from {len(images) - failed}/{len(images)} images to {output}")
    _exit_for(failed, len(images))


def _json_line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record) + "\n").encode("utf-8")


def _faceprint_for(pipeline: Pipeline, path: Path) -> tuple[Faceprint, str]:
    """A faceprint from a JSON file (``faceprint embed`` output or ``Faceprint.to_json``) or an image."""
    if path.suffix.lower() in (".json", ".jsonl"):
        if not path.is_file():
            from faceprint.errors import MissingFileError

            raise MissingFileError(f"{path}: no such file")
        text = path.read_text(encoding="utf-8").strip().splitlines()[0]
        data = json.loads(text)
        return Faceprint.from_dict(data.get("faceprint", data)), "faceprint file"
    image = load_image(path, limits=pipeline.config.limits)
    faceprint, found = pipeline.embed_largest(image)
    if faceprint is None or not found:
        from faceprint.errors import NoFaceError

        raise NoFaceError(f"{path}: no face found")
    return faceprint, "largest face"


@app.command()
@handle_errors
def compare(
    a: Annotated[Path, typer.Argument(help="Image or faceprint JSON.")],
    b: Annotated[Path, typer.Argument(help="Image or faceprint JSON.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    calibration: CalibrationOption = None,
    detector: DetectorOption = "hog",
    upsample: UpsampleOption = 1,
    backend: BackendOption = "auto",
    no_flip: NoFlipOption = False,
    model: ModelOption = DLIB_RESNET_ID,
) -> None:
    """Are A and B the same person? Similarity, calibrated probability and the decision."""
    pipeline = load_pipeline(
        pipeline_config(
            model=model,
            detector=detector,
            upsample=upsample,
            backend=backend,
            calibration=calibration,
            no_flip=no_flip,
        )
    )
    print_a, _ = _faceprint_for(pipeline, a)
    print_b, _ = _faceprint_for(pipeline, b)
    result = pipeline.compare(print_a, print_b)
    if as_json:
        payload = {"a": str(a), "b": str(b), **result.to_dict()}
        payload.update(
            {"model_id": pipeline.spec.id, "contract_id": pipeline.spec.contract_id, "package_version": __version__}
        )
        print_json(payload)
        return
    verdict = "[bold green]same person[/]" if result.is_match else "[bold yellow]different people[/]"
    stdout().print(
        f"{verdict}  probability {result.probability:.1%}  similarity {result.similarity:.4f}  "
        f"(threshold {result.threshold:.4f}, model {pipeline.spec.id})"
    )


models_app = typer.Typer(name="models", help="Installed models; `models add` registers an ONNX model.")
app.add_typer(models_app, name="models")
models_app.command(name="add")(models_add_command)


@models_app.callback(invoke_without_command=True)
@handle_errors
def models(
    ctx: typer.Context,
    thresholds: Annotated[bool, typer.Option("--thresholds", help="Show operating thresholds and FAR points.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Installed models (built-in and registered), their files verified by sha256."""
    if ctx.invoked_subcommand is not None:
        return
    from faceprint.models.registry import ModelRegistry
    from faceprint.models.store import ModelStore

    store = ModelStore()
    rows = []
    for spec in ModelRegistry(store=store).specs().values():
        files = []
        status = "ok"
        for model_file in spec.files:
            try:
                path = store.path_for(model_file)
                files.append({"name": model_file.name, "path": str(path), "sha256": model_file.sha256, "ok": True})
            except FaceprintError as err:
                status = err.code
                files.append({"name": model_file.name, "sha256": model_file.sha256, "ok": False, "error": err.message})
        row = {
            "id": spec.id,
            "task": spec.task,
            "status": status,
            "license": spec.license,
            "files": files,
            "contract_id": spec.contract_id if spec.task == "embedding" else None,
            "default_threshold": spec.default_threshold,
            "far_thresholds": dict(spec.far_thresholds),
            "calibration": spec.calibration.to_dict() if spec.calibration is not None else None,
        }
        rows.append(row)
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


@app.command()
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


app.command(name="pairs")(pairs)
app.command(name="evaluate")(evaluate)
app.command(name="calibrate")(calibrate)
app.add_typer(gallery_app, name="gallery")
app.command(name="identify")(identify)


def run() -> None:
    """Console-script entry point."""
    try:
        app()
    except FaceprintError as err:  # pragma: no cover - raised before a command's own handler runs
        stderr().print(f"error [{err.code}] {err.message}", markup=False)
        raise SystemExit(err.exit_code) from None
