"""``faceprint pairs``: score the pairs of one or more datasets into a TAR.GZ of results.

Register it in the app with ``app.command(name="pairs")(pairs)``. The work is done by
:mod:`faceprint.batch.pairs`; this module only turns options into a :class:`PairsOptions`.

Example:
    $ faceprint pairs photos/ more.tar.gz -o results.tar.gz --details
    $ faceprint pairs --inputs-dir /enclave/inputs --output-dir /enclave/outputs
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from faceprint.batch.pairs import PairsJobResult, PairsOptions, run_enclave_job, run_pairs_job
from faceprint.cli.common import (
    AssumeCroppedOption,
    BackendOption,
    CalibrationOption,
    ConfidentialOption,
    DetectorOption,
    ModelOption,
    NoFallbackOption,
    NoFlipOption,
    UpsampleOption,
    current_context,
    handle_errors,
    pipeline_config,
    stdout,
    use_confidential,
)
from faceprint.errors import EXIT_OK, UsageError
from faceprint.models.catalog import DLIB_RESNET_ID
from faceprint.settings import open_executor


@handle_errors
def pairs(
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(help="Datasets: folders, .tar, .tar.gz or .tgz, each with photos and one pairs.csv."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="The results archive to write (a .tar.gz).")
    ] = None,
    inputs_dir: Annotated[
        Path | None,
        typer.Option("--inputs-dir", help="Enclave layout: a folder of input-0001, input-0002, … datasets."),
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option("--output-dir", help="Enclave layout: where input-NNNN result folders and the archive go."),
    ] = None,
    details: Annotated[
        bool, typer.Option("--details", help="Add similarity, match, faces found and status columns.")
    ] = False,
    face: Annotated[
        str,
        typer.Option(
            "--face",
            help="Which face of a photo with several: primary (largest, off-centre faces discounted), "
            "largest, or best-match (the most similar pair of faces).",
        ),
    ] = "primary",
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Worker processes (default: every available core).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    executor: Annotated[
        str | None,
        typer.Option("--executor", help="auto, local, processes or dask://HOST:PORT (FACEPRINT_EXECUTOR)."),
    ] = None,
    no_escape_formulas: Annotated[
        bool,
        typer.Option(
            "--no-escape-formulas",
            help="Write input cells raw, even those a spreadsheet would run as a formula (=, +, -, @).",
        ),
    ] = False,
    calibration: CalibrationOption = None,
    detector: DetectorOption = "hog",
    upsample: UpsampleOption = 1,
    backend: BackendOption = "auto",
    no_fallback: NoFallbackOption = False,
    no_flip: NoFlipOption = False,
    assume_cropped: AssumeCroppedOption = False,
    model: ModelOption = DLIB_RESNET_ID,
    confidential: ConfidentialOption = False,
) -> None:
    """Score photo pairs: one output.csv per dataset (probability per row), packed in a TAR.GZ.

    Rows that cannot be scored keep their place with an empty probability and are explained in the
    dataset's processing.error. Exit status: 0 all rows scored, 1 some not, 2 usage error, 3 nothing scored.
    """
    use_confidential(confidential)
    enclave = inputs_dir is not None or output_dir is not None
    if enclave and (inputs or output is not None):
        raise UsageError("give either INPUT… -o FILE, or --inputs-dir and --output-dir, not both")
    if enclave and (inputs_dir is None or output_dir is None):
        raise UsageError("--inputs-dir and --output-dir go together")
    if not enclave and not inputs:
        raise UsageError("give one or more datasets, e.g. `faceprint pairs photos/ -o results.tar.gz`")
    if not enclave and output is None:
        raise UsageError("give the results archive to write with -o, e.g. -o results.tar.gz")
    context = current_context()
    config = pipeline_config(
        model=model,
        detector=detector,
        upsample=upsample,
        backend=backend,
        calibration=calibration,
        no_fallback=no_fallback,
        no_flip=no_flip,
        assume_cropped=assume_cropped,
    )
    options = PairsOptions(
        pipeline=config,
        details=details,
        face=face,  # type: ignore[arg-type]  # PairsOptions validates it
        workers=workers if workers is not None else context.settings.workers,
        quiet=quiet,
        escape_formulas=not no_escape_formulas,
        executor=open_executor(executor if executor is not None else context.settings.executor),
    )
    result: PairsJobResult
    if inputs_dir is not None and output_dir is not None:
        result = run_enclave_job(inputs_dir, output_dir, options, pipeline_factory=context.pipeline_factory)
    elif inputs and output is not None:
        result = run_pairs_job(inputs, output, options=options, pipeline_factory=context.pipeline_factory)
    else:  # the checks above leave no other case; kept so a future edit cannot fall through silently
        raise UsageError("give INPUT… -o FILE, or --inputs-dir and --output-dir")
    console = stdout()
    if result.output_dir is not None:
        console.print(f"results: {result.output_dir} (packed: {result.output_path})")
    else:
        console.print(f"results: {result.output_path}")
    console.print(result.summary())
    if result.exit_code != EXIT_OK:
        raise typer.Exit(code=result.exit_code)
