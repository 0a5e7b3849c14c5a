"""What every CLI command shares: error mapping, console output, pipeline options."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from faceprint.analyze import AnalyzeProgress, Analyzer, PipelineFactory
from faceprint.batch.engine import progress_bar
from faceprint.errors import EXIT_INTERNAL, FaceprintError
from faceprint.models.catalog import DLIB_RESNET_ID
from faceprint.pipeline import PipelineConfig
from faceprint.settings import Settings, load_settings, open_executor

ProgressFn = Callable[[AnalyzeProgress], None]

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


class TerminatedError(BaseException):
    """SIGTERM arrived: raised in the main thread so ``with`` blocks stop the workers, like Ctrl-C."""


def raise_on_sigterm() -> None:
    """Turn SIGTERM into :class:`TerminatedError` (installed by the console script's ``run()``)."""
    import signal

    def handler(signum: int, frame: object) -> None:
        raise TerminatedError

    signal.signal(signal.SIGTERM, handler)


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
        except TerminatedError:
            stderr().print("terminated")
            raise typer.Exit(code=143) from None
        except MemoryError:
            stderr().print("[bold red]error[/] \\[out_of_memory] not enough memory; try --workers 1")
            raise typer.Exit(code=EXIT_INTERNAL) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as err:
            if type(err).__module__.startswith(("click", "typer")):  # usage errors the CLI layer reports
                raise
            stderr().print(
                f"[bold red]error[/] \\[internal_error] {escape(f'{type(err).__name__}: {err}')} (please report this)"
            )
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
WorkersOption = Annotated[
    int | None,
    typer.Option("--workers", min=1, help="Worker processes (default: every available core; FACEPRINT_WORKERS)."),
]
FaceOption = Annotated[
    str,
    typer.Option(
        "--face",
        help="Which faces: primary (the subject: size, discounted off-centre), largest, all, or best-match (pairs).",
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
ConfidentialOption = Annotated[
    bool,
    typer.Option(
        "--confidential",
        help="Confidential mode, as FACEPRINT_CONFIDENTIAL=1: no input kept, no cache written, "
        "no face data in logs (docs/privacy.md).",
    ),
]


@dataclass(frozen=True, slots=True)
class CliContext:
    """What ``main()`` builds once per run and every command reads: the settings, and the pipeline factory.

    The factory is the seam tests use (``CliRunner().invoke(app, args, obj=CliContext(..., pipeline_factory=
    fake_pipeline_factory))``) instead of monkeypatching module globals.
    """

    settings: Settings
    pipeline_factory: PipelineFactory | None = None


def _click_context() -> Any:
    # typer >= 0.16 vendors click as typer._click; older releases use click itself.
    try:
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - depends on the typer release
        from click import get_current_context  # type: ignore[no-redef]
    return get_current_context(silent=True)


def current_context() -> CliContext:
    """The run's :class:`CliContext` (built now from the environment when a command runs on its own)."""
    ctx = _click_context()
    root = ctx.find_root() if ctx is not None else None
    if root is not None and isinstance(root.obj, CliContext):
        return root.obj
    built = CliContext(settings=load_settings())
    if root is not None:
        root.obj = built
    return built


def current_settings() -> Settings:
    """The settings ``main()`` built for this run."""
    return current_context().settings


CONFIDENTIAL_VARIABLE = "FACEPRINT_CONFIDENTIAL"


def _settings_with(settings: Settings, **overrides: Any) -> Settings:
    """``settings`` with ``overrides`` on top: every value kept as it is (none read again from the environment)."""
    names = [name for name, value in vars(Settings).items() if isinstance(value, property)]
    return Settings(environ={}, **{**{name: getattr(settings, name) for name in names}, **overrides})


def use_confidential(confidential: bool) -> Settings:
    """``--confidential``: the run's settings with confidential mode on, exactly as FACEPRINT_CONFIDENTIAL=1.

    Every command with the flag calls this first; without the flag the settings are left as they are (the
    environment may already have turned the mode on). What confidential mode does is decided in the library
    from ``settings.confidential``, never here.

    Returns:
        The run's settings (also what :func:`current_settings` returns from now on).
    """
    context = current_context()
    if not confidential:
        return context.settings
    # The flag must also reach whatever reads the environment instead of these settings: the worker
    # processes `faceprint serve` starts, the engine's worker processes (they inherit the environment, not
    # this process's objects) and faceprint.models.store.confidential_mode() (no model cache written).
    os.environ[CONFIDENTIAL_VARIABLE] = "1"
    settings = context.settings
    if not settings.confidential:
        settings = _settings_with(settings, confidential=True)
    updated = dataclasses.replace(context, settings=settings)
    ctx = _click_context()
    root = ctx.find_root() if ctx is not None else None
    if root is not None:
        root.obj = updated
    return settings


def open_analyzer(config: PipelineConfig, *, workers: int | None) -> Analyzer:
    """The engine for this command: ``--workers`` over ``FACEPRINT_WORKERS``; models verified on entry."""
    context = current_context()
    return Analyzer(
        config,
        workers=workers if workers is not None else context.settings.workers,
        executor=open_executor(context.settings.executor),
        pipeline_factory=context.pipeline_factory,
    )


@contextmanager
def image_progress(*, quiet: bool, total: int | None, description: str = "images") -> Iterator[ProgressFn]:
    """A progress bar on stderr, as the engine's progress callback (shown for more than one image)."""
    show = not quiet and (total is None or total > 1)
    bar = progress_bar(not show)
    task = bar.add_task(description, total=total)

    def advance(_: AnalyzeProgress) -> None:
        bar.advance(task, 1)

    with bar:
        yield advance


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
    """The options as a :class:`PipelineConfig`, which validates them (an unknown value is a usage error)."""
    return PipelineConfig(
        embedder=model,
        detector=detector,  # type: ignore[arg-type]  # PipelineConfig validates it
        upsample=upsample,
        backend=backend,  # type: ignore[arg-type]  # PipelineConfig validates it
        calibration_path=calibration,
        fallback=not no_fallback,
        assume_cropped=assume_cropped,
        flip_average=not no_flip,
        intra_op_threads=intra_op_threads,
    )
