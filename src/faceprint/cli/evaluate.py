"""``faceprint evaluate`` and ``faceprint calibrate``: measure or calibrate the pipeline on a labelled pair list.

Register them in the app with ``app.command(name="evaluate")(evaluate)`` and
``app.command(name="calibrate")(calibrate)``. The work is done by :mod:`faceprint.evaluate.run`; this
module only turns options into an :class:`~faceprint.evaluate.run.EvaluationOptions` and prints a summary.

Example:
    $ faceprint calibrate lfw/pairsDevTrain.txt --images lfw/images -o calib.json
    $ faceprint evaluate lfw/pairsDevTest.txt --images lfw/images -o eval/ --calibration calib.json
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from faceprint.batch.engine import FACE_MODES, FaceMode
from faceprint.cli.common import (
    AssumeCroppedOption,
    BackendOption,
    CalibrationOption,
    DetectorOption,
    ModelOption,
    NoFallbackOption,
    NoFlipOption,
    UpsampleOption,
    handle_errors,
    pipeline_config,
    stdout,
)
from faceprint.errors import EXIT_PARTIAL, BackendUnavailableError, UsageError
from faceprint.evaluate.calibrate import far_key, save_calibration
from faceprint.evaluate.report import write_report
from faceprint.evaluate.run import (
    CALIBRATION_METHODS,
    CalibrationMethod,
    EvaluationOptions,
    calibrate_pairs,
    evaluate_pairs,
)
from faceprint.io.output import check_output_path
from faceprint.models.catalog import DLIB_RESNET_ID

PairsArgument = Annotated[
    Path | None,
    typer.Argument(
        help="Labelled pair list: LFW pairs*.txt (View 1 'N' or View 2 '10 300' with folds) "
        "or a file1,file2,label[,fold] CSV.",
        metavar="PAIRS",
        show_default=False,
    ),
]
ImagesOption = Annotated[
    Path | None,
    typer.Option("--images", help="The folder the pair list's image paths are relative to.", show_default=False),
]
FaceOption = Annotated[
    str,
    typer.Option(
        "--face",
        help="Which face of an image with several: primary (largest, off-centre faces discounted), "
        "largest, or best-match (the most similar pair of faces).",
    ),
]
WorkersOption = Annotated[
    int | None, typer.Option("--workers", min=1, help="Worker processes (default: every available core).")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
MethodOption = Annotated[
    str,
    typer.Option(
        "--method",
        help="platt: P(same) from the similarity alone; quality: P(same | similarity, face quality of both "
        "photos) with quality-aware thresholds (docs/calibration.md).",
    ),
]


def _inputs(pairs: Path | None, images: Path | None, command: str) -> tuple[Path, Path]:
    if pairs is None:
        raise UsageError(f"give the pair list, e.g. `faceprint {command} pairsDevTest.txt --images lfw/images ...`")
    if images is None:
        raise UsageError("give the images folder with --images (the pair list's paths are relative to it)")
    return pairs, images


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.2f} %"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _options(*, face: str, workers: int | None, quiet: bool, **pipeline: Any) -> EvaluationOptions:
    """The options both commands share; ``pipeline`` holds the keyword arguments of ``pipeline_config``."""
    return EvaluationOptions(pipeline=pipeline_config(**pipeline), face=_face(face), workers=workers, quiet=quiet)


@handle_errors
def evaluate(
    pairs: PairsArgument = None,
    images: ImagesOption = None,
    output_dir: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Folder for report.json, report.md and the PNG plots.", show_default=False),
    ] = None,
    calibration: CalibrationOption = None,
    face: FaceOption = "primary",
    workers: WorkersOption = None,
    quiet: QuietOption = False,
    assume_cropped: AssumeCroppedOption = False,
    detector: DetectorOption = "hog",
    upsample: UpsampleOption = 1,
    backend: BackendOption = "auto",
    no_fallback: NoFallbackOption = False,
    no_flip: NoFlipOption = False,
    model: ModelOption = DLIB_RESNET_ID,
) -> None:
    """Measure face verification on labelled pairs: report.json, report.md and plots (ROC, DET, ...).

    Every distinct image is embedded once. Images without a face or unreadable are listed with their
    error code, and their pairs counted as not scored. Exit status: 0 every image had a face, 1 some did
    not (the report is still written), 2 usage error, 3 too few pairs could be scored.
    """
    pairs_path, images_dir = _inputs(pairs, images, "evaluate")
    if output_dir is None:
        raise UsageError("give the folder to write the report into with -o, e.g. -o eval-report")
    # Before minutes of embedding: never an input, a file, a device, or a read-only place.
    check_output_path(output_dir, kind="dir", inputs=[pairs_path, images_dir])
    if importlib.util.find_spec("matplotlib") is None:
        # Checked now, not when the plots are drawn after minutes of embedding.
        raise BackendUnavailableError("the report's plots need matplotlib: pip install 'faceprint[eval]'")
    options = _options(
        face=face,
        workers=workers,
        quiet=quiet,
        model=model,
        detector=detector,
        upsample=upsample,
        backend=backend,
        calibration=calibration,
        no_fallback=no_fallback,
        no_flip=no_flip,
        assume_cropped=assume_cropped,
    )
    report = evaluate_pairs(pairs_path, images_dir, options=options)
    files = write_report(report, output_dir)

    kfold = report.kfold
    at = report.at_threshold_scored
    table = Table("metric", "value", title=f"{report.dataset}: {report.model_id}")
    table.add_row("pairs scored", f"{report.scored_pair_count} of {report.pair_count}")
    table.add_row(
        f"accuracy ({kfold.fold_count}-fold, {kfold.folds_source} folds)",
        f"{_percent(kfold.mean_accuracy)} ± {_percent(kfold.std_accuracy)}",
    )
    table.add_row("AUC", f"{report.area_under_roc:.4f}")
    table.add_row("EER", _percent(report.equal_error.equal_error_rate))
    for result in report.tar_at_far:
        value = _percent(result.true_accept_rate) if result.resolved else f"n/a ({result.note})"
        table.add_row(f"TAR @ FAR {far_key(result.target_false_accept_rate)}", value)
    source = report.threshold_source.replace("_", " ")
    if report.calibration is not None and report.calibration.quality is not None:
        # Each pair's own threshold follows its face quality; this one is the reference pair's.
        source += ", reference pair; moved per pair by face quality"
    table.add_row(f"threshold ({source})", f"{report.min_similarity:.4f}")
    table.add_row("accuracy at threshold", _percent(at.accuracy))
    if report.unscored_pair_count:
        table.add_row("accuracy at threshold, unscored = rejected", _percent(report.at_threshold_all_pairs.accuracy))
    table.add_row("precision / recall", f"{_ratio(at.precision)} / {_ratio(at.recall)}")
    table.add_row("specificity / F1", f"{_ratio(at.specificity)} / {_ratio(at.f1)}")
    quality = report.calibration_quality
    if quality is not None:
        table.add_row("ECE / Brier", f"{quality.expected_calibration_error:.4f} / {quality.brier_score:.4f}")
    if report.at_50_percent is not None:
        table.add_row("accuracy at P(same) >= 50%", _percent(report.at_50_percent.accuracy))
    for quality_bin in report.quality_bins:
        bin_quality = quality_bin.calibration_quality
        if bin_quality is not None:
            table.add_row(
                f"  {quality_bin.group}: {quality_bin.label} ({quality_bin.pair_count} pairs)",
                f"ECE {bin_quality.expected_calibration_error:.4f}, Brier {bin_quality.brier_score:.4f}, "
                f"50% {_percent(quality_bin.accuracy_at_50)}",
            )
    table.add_row("failure to enrol", f"{report.failure_to_enrol_count} of {report.image_count} images")
    console = stdout()
    console.print(table)
    console.print(f"report: {files.json_path}, {files.markdown_path} and {len(files.plot_paths)} plots in {output_dir}")
    if report.failure_to_enrol_count:
        console.print(f"{report.failure_to_enrol_count} image(s) failed: see the failure-to-enrol list in report.md")
        raise typer.Exit(code=EXIT_PARTIAL)


@handle_errors
def calibrate(
    pairs: PairsArgument = None,
    images: ImagesOption = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="The calibration file to write (calib.json).", show_default=False),
    ] = None,
    face: FaceOption = "primary",
    workers: WorkersOption = None,
    quiet: QuietOption = False,
    assume_cropped: AssumeCroppedOption = False,
    detector: DetectorOption = "hog",
    upsample: UpsampleOption = 1,
    backend: BackendOption = "auto",
    no_fallback: NoFallbackOption = False,
    no_flip: NoFlipOption = False,
    model: ModelOption = DLIB_RESNET_ID,
    method: MethodOption = "platt",
) -> None:
    """Fit a calibration (similarity -> probability), threshold and FAR thresholds on labelled pairs.

    Use the file with --calibration in compare, pairs and evaluate; fit and evaluate with the same
    pipeline options (--no-flip, --face, ...). Exit status: 0 every image had a face, 1 some did not
    (the file is still written), 2 usage error, 3 too few pairs could be scored.
    """
    pairs_path, images_dir = _inputs(pairs, images, "calibrate")
    if output is None:
        raise UsageError("give the calibration file to write with -o, e.g. -o calib.json")
    check_output_path(output, inputs=[pairs_path, images_dir])
    options = _options(
        face=face,
        workers=workers,
        quiet=quiet,
        model=model,
        detector=detector,
        upsample=upsample,
        backend=backend,
        no_fallback=no_fallback,
        no_flip=no_flip,
        assume_cropped=assume_cropped,
    )
    record = calibrate_pairs(pairs_path, images_dir, options=options, method=_method(method))
    path = save_calibration(record, output)

    provenance = record.calibration.provenance
    counts = provenance.get("pairs", {})
    failed = provenance.get("failure_to_enrol", {}).get("count", 0)
    table = Table("", "", title=f"calibration for {record.contract_id}", show_header=False)
    table.add_row("pairs scored", f"{counts.get('scored')} of {counts.get('total')}")
    sigmoid = f"1 / (1 + exp(-({record.calibration.slope:.4f} * s + {record.calibration.intercept:.4f})))"
    quality_model = record.calibration.quality
    if quality_model is None:
        table.add_row("P(same)", sigmoid)
        table.add_row("threshold (best accuracy)", f"{record.threshold:.4f}")
    else:
        table.add_row("P(same), reference pair", sigmoid)
        for term in quality_model.terms:
            table.add_row(
                f"  + {term.feature}",
                f"[{term.low:.3g}, {term.high:.3g}]: slope {term.slope:+.4g}, intercept {term.intercept:+.4g}",
            )
        table.add_row("threshold (50%, reference pair)", f"{record.threshold:.4f}")
    for key, value in sorted(record.far_thresholds.items(), key=lambda item: -float(item[0])):
        table.add_row(f"threshold @ FAR {key}", f"{value:.4f}")
    for far in provenance.get("target_fars", []):
        if far_key(far) not in record.far_thresholds:
            table.add_row(f"threshold @ FAR {far_key(far)}", "n/a (too few impostor pairs)")
    table.add_row("failure to enrol", f"{failed} image(s)")
    console = stdout()
    console.print(table)
    console.print(f"calibration: {path}")
    if failed:
        raise typer.Exit(code=EXIT_PARTIAL)


def _method(method: str) -> CalibrationMethod:
    for known in CALIBRATION_METHODS:
        if method == known:
            return known
    raise UsageError(f"--method must be platt or quality, not {method!r}")


def _face(face: str) -> FaceMode:
    for mode in FACE_MODES:
        if face == mode:
            return mode
    raise UsageError(f"--face must be primary, largest or best-match, not {face!r}")
