"""The batch jobs' view of the engine: keyed photos in, a mapping of outcomes out, with a progress bar.

``faceprint pairs``, ``faceprint evaluate`` and ``faceprint calibrate`` embed a set of photos once each
and then compare them by key. That is :class:`faceprint.analyze.Analyzer` (the one engine: decoding,
detection, selection, quality, embedding, dedupe by content, worker processes that survive crashes)
wrapped in a keyed mapping and a progress bar:

- photos arrive as ``(key, source)`` items, where the source is the photo's bytes, a zero-argument
  callable that reads them (called only when the photo is about to be embedded), or a
  :class:`~faceprint.errors.FaceprintError` when reading already failed;
- every photo ends as an :class:`ImageOutcome`: faceprints (selected face first) or an error code;
- how two photos' outcomes are compared under a face mode (``primary``, ``largest``, ``best-match``) is
  :func:`compare_outcomes`, so every job that compares photos does it the same way.

Example:
    >>> from faceprint.testing import fake_pipeline_factory, make_face_png
    >>> with ImageEmbeddingEngine(workers=1, quiet=True, pipeline_factory=fake_pipeline_factory) as engine:
    ...     results = engine.embed([("a", make_face_png((200, 20, 20))), ("b", make_face_png((200, 20, 20)))])
    >>> results["a"].faces_found, results.embedded   # two keys, one distinct photo
    (1, 1)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Generic, Literal, Self, TypeVar, get_args

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from faceprint.analyze import (
    AnalyzeItem,
    AnalyzeOptions,
    AnalyzeProgress,
    Analyzer,
    Compares,
    EmbeddingPipeline,
    FaceResult,
    ImageFailedError,
    ImageResult,
    PipelineFactory,
    analyze_image,
    default_pipeline_factory,
)
from faceprint.errors import FaceprintError, InputError, NoFaceError, UsageError
from faceprint.execute.base import Executor, available_cores
from faceprint.execute.processes import WorkerFailedError
from faceprint.io.image import ImageLimits, decode_image
from faceprint.pipeline import ModelHead, PipelineConfig
from faceprint.types import Comparison, Faceprint

__all__ = [
    "FACE_MODES",
    "EmbeddedImages",
    "EmbeddingPipeline",
    "FaceMode",
    "ImageEmbeddingEngine",
    "ImageFailedError",
    "ImageLoader",
    "ImageOutcome",
    "ImageSource",
    "PipelineFactory",
    "WorkerFailedError",
    "available_cores",
    "check_face_mode",
    "compare_outcomes",
    "default_pipeline_factory",
    "embed_image",
    "pipeline_config_for_face",
    "worker_pipeline_config",
]

FaceMode = Literal["primary", "largest", "best-match"]
"""The face rules of jobs that compare photos (``all`` would compare the primary face: use ``primary``)."""
FACE_MODES: tuple[FaceMode, ...] = get_args(FaceMode)

K = TypeVar("K", bound=Hashable)

ImageLoader = Callable[[], bytes]
"""Reads one photo's bytes when called; raises an :class:`~faceprint.errors.InputError` if it cannot."""
ImageSource = bytes | ImageLoader | FaceprintError
"""A photo's bytes, a loader of them, or the error that reading already gave."""


def worker_pipeline_config(config: PipelineConfig) -> PipelineConfig:
    """The config each pool worker builds its pipeline from: one inference thread, so N workers use N cores.

    Example:
        >>> worker_pipeline_config(PipelineConfig(intra_op_threads=8)).intra_op_threads
        1
    """
    return replace(config, intra_op_threads=1)


def check_face_mode(face: str) -> FaceMode:
    """``face`` as a :data:`FaceMode`, or a :class:`~faceprint.errors.UsageError` naming the choices.

    Example:
        >>> check_face_mode("best-match")
        'best-match'
    """
    for mode in FACE_MODES:
        if face == mode:
            return mode
    raise UsageError(f"face must be 'primary', 'largest' or 'best-match', not {face!r}")


def pipeline_config_for_face(config: PipelineConfig, face: FaceMode) -> PipelineConfig:
    """The pipeline config whose ``face_selection`` puts the face ``face`` asks for first.

    Example:
        >>> pipeline_config_for_face(PipelineConfig(), "largest").face_selection
        'largest'
    """
    if face == "best-match" or config.face_selection == face:
        return config
    return replace(config, face_selection=face)


@dataclass(frozen=True, slots=True)
class ImageOutcome:
    """What embedding one photo gave: faceprints (selected face first) or an error code and message.

    Example:
        >>> ImageOutcome.failed(NoFaceError("a.jpg: no face found"), faces_found=0).error_code
        'no_face'
    """

    faceprints: tuple[Faceprint, ...] = ()
    faces_found: int | None = None
    """Faces the detector found; None when the photo could not be read or decoded."""
    error_code: str | None = None
    error_message: str | None = None
    faces: tuple[FaceResult, ...] = ()
    """Every face found, with its box, landmarks and quality (the selected one first)."""

    @property
    def ok(self) -> bool:
        """True when the photo gave at least one faceprint."""
        return self.error_code is None

    @classmethod
    def failed(cls, error: FaceprintError, *, faces_found: int | None = None) -> ImageOutcome:
        return cls(faces_found=faces_found, error_code=error.code, error_message=error.message)

    @classmethod
    def of(cls, result: ImageResult) -> ImageOutcome:
        """The outcome of an engine result."""
        return cls(
            faceprints=result.faceprints,
            faces_found=result.faces_found,
            error_code=result.error_code,
            error_message=result.error_message,
            faces=result.faces,
        )


def _options(face: FaceMode) -> AnalyzeOptions:
    return AnalyzeOptions(face=face)


def embed_image(
    pipeline: EmbeddingPipeline,
    data: bytes,
    *,
    name: str,
    limits: ImageLimits | None = None,
    keep_all_faces: bool = False,
) -> ImageOutcome:
    """Decode and embed one photo in this thread; input problems become an error outcome, not an exception.

    Example:
        >>> from faceprint.testing import FakePipeline, make_blank_png
        >>> embed_image(FakePipeline(), make_blank_png(), name="grey.png").error_code
        'no_face'
    """
    face: FaceMode = "best-match" if keep_all_faces else pipeline.config.face_selection
    try:
        image = decode_image(data, limits=limits, name=name)
        faces, found = analyze_image(pipeline, image, options=_options(face))
    except InputError as err:
        return ImageOutcome.failed(err)
    except FaceprintError:
        raise
    except Exception as err:  # a native-library failure on one odd photo must not stop 10,000 others
        return ImageOutcome.failed(ImageFailedError(f"{name}: {type(err).__name__}: {err}"))
    faceprints = tuple(f.faceprint for f in faces if f.faceprint is not None)
    if not faceprints:
        return ImageOutcome.failed(NoFaceError(f"{name}: no face found"), faces_found=found)
    return ImageOutcome(faceprints=faceprints, faces_found=found, faces=faces)


def compare_outcomes(pipeline: Compares, a: ImageOutcome, b: ImageOutcome, *, face: FaceMode) -> Comparison:
    """Compare two embedded photos: their selected faces, or with ``best-match`` the most similar pair of faces.

    Raises:
        ImageFailedError: An outcome without faceprints (a caller bug: failed photos are not compared).

    Example:
        >>> from faceprint.testing import FakePipeline, make_face_png
        >>> pipeline = FakePipeline()
        >>> red = embed_image(pipeline, make_face_png((200, 20, 20)), name="red.png")
        >>> compare_outcomes(pipeline, red, red, face="primary").is_match
        True
    """
    if not a.faceprints or not b.faceprints:
        raise ImageFailedError("no faceprints to compare")
    if face != "best-match":
        return pipeline.compare(a.faceprints[0], b.faceprints[0])
    best: Comparison | None = None
    for print_a in a.faceprints:
        for print_b in b.faceprints:
            comparison = pipeline.compare(print_a, print_b)
            if best is None or comparison.similarity > best.similarity:
                best = comparison
    if best is None:  # unreachable: both tuples are non-empty
        raise ImageFailedError("no faceprints to compare")
    return best


class EmbeddedImages(Mapping[K, ImageOutcome], Generic[K]):
    """The outcome of every key given to :meth:`ImageEmbeddingEngine.embed`, in the order given.

    ``embedded`` counts the distinct photo contents decoded and embedded (a photo under two keys once).

    Example:
        >>> results = EmbeddedImages({"a.jpg": ImageOutcome.failed(NoFaceError("a.jpg"))}, embedded=1)
        >>> list(results.failed()), results.embedded
        (['a.jpg'], 1)
    """

    __slots__ = ("_outcomes", "embedded")

    def __init__(self, outcomes: Mapping[K, ImageOutcome], *, embedded: int) -> None:
        self._outcomes = dict(outcomes)
        self.embedded = embedded

    def __getitem__(self, key: K) -> ImageOutcome:
        return self._outcomes[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._outcomes)

    def __len__(self) -> int:
        return len(self._outcomes)

    def failed(self) -> dict[K, ImageOutcome]:
        """The keys whose photo gave no faceprint, with their outcome (error code and message)."""
        return {key: outcome for key, outcome in self._outcomes.items() if outcome.error_code is not None}


class _ImagesPerSecondColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("? images/s" if speed is None else f"{speed:.1f} images/s", style="progress.data.speed")


class _ThreadlessProgress(Progress):
    """A progress bar without rich's refresh thread: it redraws from :meth:`advance`, ten times a second.

    Why: worker processes are forked only from a single-threaded process (see
    :func:`faceprint.execute.processes.fork_is_safe`), and a refresh thread would make every command that
    shows a bar spawn its workers instead, half a second slower each.
    """

    _REFRESH_S = 0.1

    def __init__(self, *columns: str | ProgressColumn, console: Console, disable: bool) -> None:
        super().__init__(*columns, console=console, disable=disable, auto_refresh=False)
        self._drawn_at = 0.0

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        now = time.monotonic()
        if now - self._drawn_at >= self._REFRESH_S:
            self._drawn_at = now
            self.refresh()


def progress_bar(quiet: bool) -> Progress:
    """The images progress bar every batch command shows on stderr (it starts no thread)."""
    return _ThreadlessProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("images"),
        _ImagesPerSecondColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=quiet,
    )


class ImageEmbeddingEngine:
    """Embeds photos once each through an :class:`~faceprint.analyze.Analyzer`; see the module doc.

    Use it as a context manager: entering builds the pipeline (so a missing or corrupt model fails before
    any photo is read) and shows the progress bar on stderr; leaving removes the bar and stops the
    workers, unless an ``analyzer`` was given (then its owner keeps it, workers and all).

    Args:
        pipeline_config: What every pipeline is built from (workers get one inference thread each).
        workers: Worker processes; ``None`` means every available core, 1 embeds in this process.
        quiet: No progress bar.
        pipeline_factory: Builds the pipelines (default: the real one); must be picklable for ``workers > 1``.
        keep_all_faces: Keep every face's faceprint (for ``best-match``), else only the selected one.
        analyzer: A long-lived engine to use instead of building one (a job service's).
        executor: Where the work runs (see :class:`~faceprint.analyze.Analyzer`).

    Raises:
        UsageError: ``workers`` below 1.
    """

    def __init__(
        self,
        pipeline_config: PipelineConfig | None = None,
        *,
        workers: int | None = None,
        quiet: bool = False,
        pipeline_factory: PipelineFactory | None = None,
        keep_all_faces: bool = False,
        analyzer: Analyzer | None = None,
        executor: Literal["auto", "local", "processes"] | Executor = "auto",
    ) -> None:
        if workers is not None and workers < 1:
            raise UsageError(f"workers must be at least 1, got {workers}")
        self._config = pipeline_config if pipeline_config is not None else PipelineConfig()
        self._owns_analyzer = analyzer is None
        self._analyzer = (
            analyzer
            if analyzer is not None
            else Analyzer(self._config, workers=workers, pipeline_factory=pipeline_factory, executor=executor)
        )
        self._keep_all = keep_all_faces
        self._face: FaceMode = "best-match" if keep_all_faces else self._config.face_selection
        self._progress = progress_bar(quiet)
        self._entered = False

    def __enter__(self) -> Self:
        _ = self._analyzer.head
        self._entered = True
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            if self._owns_analyzer:
                self._analyzer.close()
        finally:
            self._progress.stop()

    @property
    def head(self) -> ModelHead:
        """The model's spec and calibrated comparator, read on entering (no network is loaded for it).

        Raises:
            UsageError: The engine was not entered (``with ImageEmbeddingEngine(...) as engine``).
        """
        if not self._entered:
            raise UsageError("use the engine in a `with` block before asking for its model")
        return self._analyzer.head

    @property
    def max_workers(self) -> int:
        """The most worker processes this engine will start."""
        return self._analyzer.workers

    @property
    def keep_all_faces(self) -> bool:
        return self._keep_all

    def embed(
        self,
        items: Iterable[tuple[K, ImageSource]],
        *,
        total: int | None = None,
        description: str = "images",
        progress: Callable[[AnalyzeProgress], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> EmbeddedImages[K]:
        """Embed every photo of ``items``, each distinct content once; one progress-bar line per call.

        Args:
            items: ``(key, source)`` pairs; the key names the photo in messages (``str(key)``) and in the
                result. Sources are read one at a time, just before their photo is embedded.
            total: How many items there are, for the bar and the pool size.
            description: The progress bar's label.
            progress: Also called after each photo (a job's progress).
            cancel: Stops the call (raises :class:`~faceprint.analyze.CancelledError`) when set.

        Returns:
            An outcome per key, in the order given.

        Raises:
            UsageError: The engine was not entered, or a factory that cannot be pickled with ``workers > 1``.
            FaceprintError: A model failure (input problems become error outcomes instead).
        """
        _ = self.head
        count = total if total is not None else (len(items) if isinstance(items, Sized) else None)
        task = self._progress.add_task(description, total=count)
        keys: list[K] = []

        def analyze_items() -> Iterator[AnalyzeItem]:
            for key, source in items:
                keys.append(key)
                yield AnalyzeItem(str(key), source)

        def advance(state: AnalyzeProgress) -> None:
            self._progress.advance(task, 1)
            if progress is not None:
                progress(state)

        outcomes: dict[K, ImageOutcome] = {}
        digests: set[str] = set()
        results = self._analyzer.analyze(
            analyze_items(), options=_options(self._face), progress=advance, cancel=cancel, total=count
        )
        for result in results:
            outcomes[keys[result.index]] = ImageOutcome.of(result)
            if result.sha256 is not None:
                digests.add(result.sha256)
        return EmbeddedImages(outcomes, embedded=len(digests))
