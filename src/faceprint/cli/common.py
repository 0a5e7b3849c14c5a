"""What every CLI command shares: error mapping, console output, pipeline options."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from faceprint.errors import EXIT_INTERNAL, FaceprintError
from faceprint.models.catalog import DLIB_RESNET_ID
from faceprint.pipeline import PipelineConfig

P = ParamSpec("P")
R = TypeVar("R")


def stdout() -> Console:
    return Console(highlight=False, soft_wrap=True)


def stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def fail(error: FaceprintError) -> typer.Exit:
    """Print one clear line for a user-facing error and return the Exit to raise."""
    stderr().print(f"[bold red]error[/] {escape(f'[{error.code}]')} {escape(error.message)}")
    return typer.Exit(code=error.exit_code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn faceprint errors into one line on stderr and the documented exit code; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except FaceprintError as err:
            raise fail(err) from None
        except KeyboardInterrupt:
            stderr().print("interrupted")
            raise typer.Exit(code=130) from None
        except MemoryError:
            stderr().print("[bold red]error[/] \\[out_of_memory] not enough memory; try --workers 1")
            raise typer.Exit(code=EXIT_INTERNAL) from None

    return wrapper


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


ModelOption = Annotated[
    str, typer.Option("--model", help="Embedding model id: dlib-resnet-v1 (default) or one from `models add`.")
]
DetectorOption = Annotated[str, typer.Option("--detector", help="hog (default) or mmod (CNN, slow on CPU).")]
UpsampleOption = Annotated[int, typer.Option("--upsample", min=0, max=3, help="HOG upsampling: 1 finds ~40 px faces.")]
BackendOption = Annotated[str, typer.Option("--backend", help="auto (ONNX Runtime when available), onnx or dlib.")]
CalibrationOption = Annotated[
    Path | None, typer.Option("--calibration", help="A calib.json from `faceprint calibrate` to use instead.")
]
NoFallbackOption = Annotated[
    bool, typer.Option("--no-fallback", help="Do not retry undetected images with stronger detectors.")
]
AssumeCroppedOption = Annotated[
    bool,
    typer.Option(
        "--assume-cropped",
        help="Photos are pre-cropped faces (ID photos, LFW): if no detector finds a face, use the centre.",
    ),
]
NoFlipOption = Annotated[bool, typer.Option("--no-flip", help="Embed the chip only, not chip + mirror (faster).")]


def pipeline_config(
    *,
    model: str = DLIB_RESNET_ID,
    detector: str = "hog",
    upsample: int = 1,
    backend: str = "auto",
    calibration: Path | None = None,
    no_fallback: bool = False,
    no_flip: bool = False,
    assume_cropped: bool = False,
    intra_op_threads: int | None = None,
) -> PipelineConfig:
    from faceprint.errors import UsageError

    if detector not in ("hog", "mmod"):
        raise UsageError(f"--detector must be hog or mmod, not {detector!r}")
    if backend not in ("auto", "onnx", "dlib"):
        raise UsageError(f"--backend must be auto, onnx or dlib, not {backend!r}")
    return PipelineConfig(
        embedder=model,
        detector=detector,  # type: ignore[arg-type]  # validated above
        upsample=upsample,
        backend=backend,  # type: ignore[arg-type]  # validated above
        calibration_path=calibration,
        fallback=not no_fallback,
        assume_cropped=assume_cropped,
        flip_average=not no_flip,
        intra_op_threads=intra_op_threads,
    )
