"""The engine: many items in, one result per image streamed out, for every entry point.

Every command and service that looks at photos (``detect``, ``embed``, ``compare``, ``identify``,
``gallery enroll``, ``pairs``, ``evaluate``, ``calibrate``, video, the job workers) builds
:class:`AnalyzeItem` s and reads :class:`ImageResult` s from one :class:`Analyzer`:

- items are paths, bytes, loaders of bytes, decoded arrays (video frames) or an error that reading already
  gave; an item may carry its own boxes, and then only those faces are aligned and embedded;
- per image the result holds the size, every face found (box, landmarks, quality), faceprints for the
  faces the face rule asks for (the selected face first), and an error code. Problems with one image
  (unreadable, undecodable, too small, no face, a native failure, a worker that died on it) are that
  image's result; only a model failure stops the run;
- one face rule, validated here: ``primary`` (the subject: size discounted off-centre), ``largest``,
  ``all``, and ``best-match`` (every face, compared pairwise by :func:`compare_results`);
- identical bytes are decoded and embedded once per call; results come in input order or as completed;
  progress is a callback; a ``threading.Event`` cancels;
- the work runs on an executor (:mod:`faceprint.execute`): this process, or worker processes that outlive
  one call and survive crashes. The Analyzer is thread-safe and meant to live as long as its process.

Example:
    >>> from faceprint.testing import fake_pipeline_factory, make_face_png
    >>> with Analyzer(workers=1, pipeline_factory=fake_pipeline_factory) as analyzer:
    ...     results = list(analyzer.analyze([AnalyzeItem("a.png", make_face_png((200, 20, 20))),
    ...                                      AnalyzeItem("b.png", b"not an image")]))
    >>> [(r.key, r.faces_found, r.error_code) for r in results]
    [('a.png', 1, None), ('b.png', None, 'decode_error')]
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol, Self, get_args

import numpy as np

from faceprint.compare import Comparator
from faceprint.errors import (
    EXIT_INTERNAL,
    FaceprintError,
    InputError,
    NoFaceError,
    UsageError,
)
from faceprint.execute.base import CancelledError, Executor, available_cores
from faceprint.io.image import ImageLimits, decode_image, read_image_file
from faceprint.models.spec import ModelSpec
from faceprint.pipeline import ModelHead, PipelineConfig
from faceprint.types import Comparison, Detection, Faceprint, FaceQuality, RGBImage

__all__ = [
    "FACE_MODES",
    "AnalyzeItem",
    "AnalyzeOptions",
    "AnalyzeProgress",
    "Analyzer",
    "CancelledError",
    "Compares",
    "EmbeddingPipeline",
    "ExecutorName",
    "FaceMode",
    "FaceResult",
    "ImageFailedError",
    "ImageResult",
    "PipelineFactory",
    "WorkerCrashedError",
    "analyze_image",
    "check_face_mode",
    "compare_results",
    "default_pipeline_factory",
]

FaceMode = Literal["primary", "largest", "all", "best-match"]
FACE_MODES: tuple[FaceMode, ...] = get_args(FaceMode)
ExecutorName = Literal["auto", "local", "processes"]
_MIN_ITEMS_FOR_PROCESSES = 48
"""With ``executor="auto"``, fewer items than this run in this process (measured break-even: docs/performance.md)."""
Source = bytes | Path | Callable[[], bytes] | np.ndarray | FaceprintError
"""An item's photo: bytes, a path, a loader of bytes (raising InputError), a decoded RGB array, or an error."""


class ImageFailedError(FaceprintError):
    """An unexpected failure on one photo (a native library error); recorded for it, the run goes on."""

    code = "internal_error"
    exit_code = EXIT_INTERNAL


class WorkerCrashedError(FaceprintError):
    """The worker process died twice on this photo (killed for memory, or a native crash); the run goes on."""

    code = "worker_crashed"
    exit_code = EXIT_INTERNAL


class EmbeddingPipeline(Protocol):
    """What the engine needs of :class:`faceprint.pipeline.Pipeline` (and of the test fake)."""

    @property
    def spec(self) -> ModelSpec: ...

    @property
    def comparator(self) -> Comparator: ...

    @property
    def config(self) -> PipelineConfig: ...

    def detect_faces(
        self,
        image: RGBImage,
        *,
        largest_only: bool = False,
        cheap_first: bool = False,
        selection: Literal["primary", "largest"] | None = None,
        max_side_px: int | None = None,
    ) -> list[Detection]: ...

    def extract_aligned_face(self, image: RGBImage, detection: Detection, *, size: int | None = None) -> RGBImage: ...

    def embed_batch(self, chips: list[RGBImage]) -> list[Faceprint]: ...

    def compare(self, a: Faceprint, b: Faceprint) -> Comparison: ...


PipelineFactory = Callable[[PipelineConfig], EmbeddingPipeline]
"""Builds a pipeline from a config; must be picklable (module-level) for worker processes."""


class Compares(Protocol):
    """Anything that compares two faceprints of one model: an :class:`Analyzer`, a pipeline, a model head."""

    def compare(self, a: Faceprint, b: Faceprint) -> Comparison: ...


def default_pipeline_factory(config: PipelineConfig) -> EmbeddingPipeline:
    """The real pipeline (models verified at load)."""
    from faceprint.pipeline import load_pipeline

    return load_pipeline(config)


def check_face_mode(face: str) -> FaceMode:
    """``face`` as a :data:`FaceMode`, or a :class:`~faceprint.errors.UsageError` naming the choices.

    Example:
        >>> check_face_mode("best-match")
        'best-match'
    """
    for mode in FACE_MODES:
        if face == mode:
            return mode
    raise UsageError(f"face must be one of {', '.join(FACE_MODES)}, not {face!r}")


# --- requests and results -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnalyzeOptions:
    """What to do with each image; one object for every entry point, validated here.

    Example:
        >>> AnalyzeOptions(face="all", embed=False).embeds_every_face
        True
        >>> AnalyzeOptions(face="biggest")
        Traceback (most recent call last):
        ...
        faceprint.errors.UsageError: face must be one of primary, largest, all, best-match, not 'biggest'
    """

    face: FaceMode = "primary"
    """``primary``/``largest``: a cheap detection pass first (the full cascade only when it finds nothing),
    and only the selected face is embedded; ``all`` and ``best-match``: the full cascade, every face
    embedded. The same rule gives the same faces whether or not anything is embedded."""
    embed: bool = True
    """False: detection, landmarks and quality only."""
    detect_max_side_px: int | None = None
    """Resize so the longest side is at most this for detection (video's ``face_detection_scale``)."""

    def __post_init__(self) -> None:
        check_face_mode(self.face)
        if self.detect_max_side_px is not None and not 64 <= self.detect_max_side_px <= 10_000:
            raise UsageError(f"detect_max_side_px must be 64-10000, got {self.detect_max_side_px}")

    @property
    def embeds_every_face(self) -> bool:
        return self.face in ("all", "best-match")


@dataclass(frozen=True, slots=True, eq=False)
class AnalyzeItem:
    """One photo to analyse.

    Example:
        >>> AnalyzeItem("team.jpg", Path("team.jpg")).key
        'team.jpg'
    """

    key: str
    """Names the item in its result and in messages."""
    source: Source
    detections: tuple[Detection, ...] | None = None
    """Boxes found elsewhere (a tracker): detection is skipped, only these faces are aligned and embedded."""


@dataclass(frozen=True, slots=True)
class FaceResult:
    """One face of an image: where it is, how good it is, and its faceprint when it was embedded."""

    detection: Detection
    faceprint: Faceprint | None = None
    quality: FaceQuality | None = None

    def to_dict(self, size_wh: tuple[int, int] | None = None) -> dict[str, object]:
        data: dict[str, object] = dict(self.detection.to_dict())
        if size_wh is not None:
            data["bbox_normalized"] = [round(v, 4) for v in self.detection.normalized_bbox(size_wh)]
        data["quality"] = None if self.quality is None else self.quality.to_dict()
        return data


@dataclass(frozen=True, slots=True)
class ImageResult:
    """What analysing one image gave.

    Example:
        >>> ImageResult.failed("a.jpg", 0, NoFaceError("a.jpg: no face found"), faces_found=0).error_code
        'no_face'
    """

    key: str
    index: int
    """Position of the item in the input."""
    size_wh: tuple[int, int] | None
    """Decoded size; None when the image could not be read or decoded."""
    faces: tuple[FaceResult, ...] = ()
    """Every face found, the selected face first."""
    faces_found: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    sha256: str | None = None
    """Of the item's bytes (None for arrays)."""

    @property
    def ok(self) -> bool:
        return self.error_code is None

    @property
    def selected(self) -> FaceResult | None:
        return self.faces[0] if self.faces else None

    @property
    def faceprints(self) -> tuple[Faceprint, ...]:
        """The faceprints made, the selected face's first."""
        return tuple(face.faceprint for face in self.faces if face.faceprint is not None)

    @classmethod
    def failed(
        cls,
        key: str,
        index: int,
        error: FaceprintError,
        *,
        faces_found: int | None = None,
        size_wh: tuple[int, int] | None = None,
        faces: tuple[FaceResult, ...] = (),
        sha256: str | None = None,
    ) -> ImageResult:
        return cls(
            key=key,
            index=index,
            size_wh=size_wh,
            faces=faces,
            faces_found=faces_found,
            error_code=error.code,
            error_message=error.message,
            sha256=sha256,
        )

    def error_dict(self) -> dict[str, object] | None:
        if self.error_code is None:
            return None
        return {"code": self.error_code, "message": self.error_message, "details": {}}


@dataclass(frozen=True, slots=True)
class AnalyzeProgress:
    """Where a call stands, given to the progress callback after every image."""

    done: int
    total: int | None
    failed: int


# --- one image ------------------------------------------------------------------------------------------


def _as_image(array: np.ndarray, name: str) -> RGBImage:
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
        from faceprint.errors import DecodeError

        raise DecodeError(f"{name}: an image array must be uint8 (height, width, 3), got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array)


def _assess(image: RGBImage, detection: Detection, chip: RGBImage) -> FaceQuality | None:
    from faceprint.quality import assess_face

    return assess_face(image, detection, chip)


def analyze_image(
    pipeline: EmbeddingPipeline,
    image: RGBImage,
    *,
    options: AnalyzeOptions,
    detections: tuple[Detection, ...] | None = None,
) -> tuple[tuple[FaceResult, ...], int]:
    """Detect (unless ``detections`` are given), align, measure quality and embed the faces of one image.

    Returns the faces (the selected one first; only the faces the rule asks for carry a faceprint) and how
    many faces were found. Problems raise; :class:`Analyzer` turns them into the image's result.

    Example:
        >>> from faceprint.testing import FakePipeline, make_two_face_png
        >>> from faceprint.io.image import ImageLimits, decode_image, read_image_file
        >>> image = decode_image(make_two_face_png((200, 20, 20), (20, 20, 200)))
        >>> faces, found = analyze_image(FakePipeline(), image, options=AnalyzeOptions(face="all"))
        >>> found, len([f for f in faces if f.faceprint is not None])
        (2, 2)
    """
    if detections is not None:
        found = [d if d.landmarks_xy else _with_landmarks(pipeline, image, d) for d in detections]
    elif options.embeds_every_face:
        found = pipeline.detect_faces(image, selection="primary", max_side_px=options.detect_max_side_px)
    else:
        selection: Literal["primary", "largest"] = "largest" if options.face == "largest" else "primary"
        found = pipeline.detect_faces(
            image, cheap_first=True, selection=selection, max_side_px=options.detect_max_side_px
        )
    chips = [pipeline.extract_aligned_face(image, d) for d in found]
    qualities = [_assess(image, d, chip) for d, chip in zip(found, chips, strict=True)]
    to_embed = 0
    if options.embed:
        to_embed = len(found) if (options.embeds_every_face or detections is not None) else min(1, len(found))
    faceprints = pipeline.embed_batch(chips[:to_embed]) if to_embed else []
    faces = []
    for index, (detection, quality) in enumerate(zip(found, qualities, strict=True)):
        faceprint = faceprints[index] if index < len(faceprints) else None
        if faceprint is not None and quality is not None:
            faceprint = replace(faceprint, quality=quality)
        faces.append(FaceResult(detection=detection, faceprint=faceprint, quality=quality))
    return tuple(faces), len(found)


def _with_landmarks(pipeline: EmbeddingPipeline, image: RGBImage, detection: Detection) -> Detection:
    landmarker = getattr(pipeline, "landmarker", None)
    if landmarker is None:
        return detection
    return detection.with_landmarks(landmarker.landmarks(image, detection))


# --- the worker program ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Task:
    name: str
    payload: bytes | np.ndarray
    detections: tuple[Detection, ...] | None
    options: AnalyzeOptions


@dataclass(frozen=True, slots=True)
class _Outcome:
    """An image's result before its key and index are known (shared by items with the same bytes)."""

    name: str
    """The item name its messages were written with."""
    size_wh: tuple[int, int] | None
    faces: tuple[FaceResult, ...]
    faces_found: int | None
    error_code: str | None
    error_message: str | None


@dataclass(frozen=True, slots=True)
class _AnalyzeProgram:
    factory: PipelineFactory
    config: PipelineConfig

    def build(self) -> EmbeddingPipeline:
        return self.factory(self.config)

    def run(self, state: EmbeddingPipeline, task: _Task) -> _Outcome:
        size_wh: tuple[int, int] | None = None
        try:
            if isinstance(task.payload, np.ndarray):
                image = _as_image(task.payload, task.name)
            else:
                image = decode_image(task.payload, limits=self.config.limits, name=task.name)
            size_wh = (int(image.shape[1]), int(image.shape[0]))
            faces, found = analyze_image(state, image, options=task.options, detections=task.detections)
        except InputError as err:
            return _Outcome(task.name, size_wh, (), None, err.code, err.message)
        if task.options.embed and not any(face.faceprint is not None for face in faces):
            error = NoFaceError(f"{task.name}: no face found")
            return _Outcome(task.name, size_wh, faces, found, error.code, error.message)
        return _Outcome(task.name, size_wh, faces, found, None, None)

    def failed(self, task: _Task, message: str, *, crashed: bool) -> _Outcome:
        error: FaceprintError = (
            WorkerCrashedError(f"{task.name}: {message}") if crashed else ImageFailedError(f"{task.name}: {message}")
        )
        return _Outcome(task.name, None, (), None, error.code, error.message)


# --- the engine -----------------------------------------------------------------------------------------


class Analyzer:
    """The long-lived engine; see the module doc. Use it in a ``with`` block (or call :meth:`close`).

    Args:
        config: What every pipeline is built from; worker processes get one inference thread each.
        workers: Worker processes; ``None`` means every available core. With ``executor="auto"``, 1 means
            this process.
        executor: ``auto`` (processes when ``workers > 1``), ``local`` (this process), ``processes``, or an
            :class:`~faceprint.execute.base.Executor` (e.g. a distributed one).
        pipeline_factory: Builds pipelines (default: the real one, models verified at load).

    Raises:
        UsageError: ``workers`` below 1 or an unknown executor.

    Example:
        >>> with Analyzer(PipelineConfig(), workers=2) as analyzer:                      # doctest: +SKIP
        ...     for result in analyzer.analyze(AnalyzeItem(p.name, p) for p in Path("photos").iterdir()):
        ...         print(result.key, result.faces_found, result.error_code)
    """

    def __init__(
        self,
        config: PipelineConfig | None = None,
        *,
        workers: int | None = None,
        executor: ExecutorName | Executor = "auto",
        pipeline_factory: PipelineFactory | None = None,
    ) -> None:
        if workers is not None and workers < 1:
            raise UsageError(f"workers must be at least 1, got {workers}")
        self._config = config if config is not None else PipelineConfig()
        self._factory = pipeline_factory if pipeline_factory is not None else default_pipeline_factory
        self._workers = workers if workers is not None else available_cores()
        if isinstance(executor, str) and executor not in get_args(ExecutorName):
            raise UsageError(f"executor must be auto, local or processes, not {executor!r}")
        self._executor_choice = executor
        self._pipeline: EmbeddingPipeline | None = None
        self._head: ModelHead | None = None
        self._local: Executor | None = None
        self._remote: Executor | None = None
        self._lock = threading.Lock()

    @property
    def config(self) -> PipelineConfig:
        return self._config

    @property
    def workers(self) -> int:
        return self._workers

    @property
    def pipeline(self) -> EmbeddingPipeline:
        """This process's pipeline, built on first use: only work done in this process needs it."""
        with self._lock:
            if self._pipeline is None:
                self._pipeline = self._factory(self._config)
            return self._pipeline

    @property
    def head(self) -> ModelHead:
        """The model's spec and calibrated comparator: all that comparing and reporting need.

        With the real pipeline factory it is read without loading a network (the workers load those),
        which saves a model load in every process that only hands photos to workers; with another factory
        it comes from that factory's pipeline.
        """
        with self._lock:
            if self._head is None:
                if self._factory is default_pipeline_factory:
                    from faceprint.pipeline import load_model_head

                    self._head = load_model_head(self._config)
                else:
                    if self._pipeline is None:
                        self._pipeline = self._factory(self._config)
                    self._head = ModelHead(spec=self._pipeline.spec, comparator=self._pipeline.comparator)
            return self._head

    @property
    def spec(self) -> ModelSpec:
        return self.head.spec

    @property
    def comparator(self) -> Comparator:
        return self.head.comparator

    def __enter__(self) -> Self:
        # Every model file is verified here, so a missing or corrupt model fails before any photo is read.
        _ = self.head
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker processes (the pipeline of this process is kept)."""
        with self._lock:
            for executor in (self._remote, self._local):
                if executor is not None:
                    executor.close()
            self._remote = None
            self._local = None

    def compare(self, a: Faceprint, b: Faceprint) -> Comparison:
        """Similarity, distance, calibrated probability and decision for two faceprints of this model."""
        return self.head.compare(a, b)

    def _executor_for(self, count: int | None) -> Executor:
        from faceprint.execute.local import LocalExecutor

        choice = self._executor_choice
        with self._lock:
            if not isinstance(choice, str):
                return choice
            # Starting a worker costs a model load (about a second), so a handful of photos is faster here.
            parallel = choice == "processes" or (
                choice == "auto" and self._workers > 1 and (count is None or count >= _MIN_ITEMS_FOR_PROCESSES)
            )
            if parallel:
                if self._remote is None:
                    from faceprint.execute.processes import ProcessExecutor

                    self._remote = ProcessExecutor(workers=self._workers)
                return self._remote
            if self._local is None:
                self._local = LocalExecutor()
            return self._local

    def _program(self, executor: Executor) -> _AnalyzeProgram | _Shared:
        if executor is self._local:
            # In this process: the Analyzer's own pipeline, not a second model load.
            return _Shared(self.pipeline, _AnalyzeProgram(factory=self._factory, config=self._config))
        # Each worker process runs one inference thread, so N workers use N cores, not N².
        return _AnalyzeProgram(factory=self._factory, config=replace(self._config, intra_op_threads=1))

    def analyze(
        self,
        items: Iterable[AnalyzeItem],
        *,
        options: AnalyzeOptions | None = None,
        order: Literal["input", "completed"] = "input",
        progress: Callable[[AnalyzeProgress], None] | None = None,
        cancel: threading.Event | None = None,
        total: int | None = None,
    ) -> Iterator[ImageResult]:
        """Analyse every item; one :class:`ImageResult` per item, streamed.

        Args:
            items: Read lazily, one at a time: a source is read just before its photo is sent.
            options: The face rule and what to compute (default: the primary face, embedded).
            order: ``input`` (the items' order) or ``completed`` (as soon as each is done).
            progress: Called after each item with the counts so far.
            cancel: When set, no new item starts; the call raises :class:`CancelledError` after the
                running ones finish.
            total: How many items there are (for progress and the choice of pool), when ``items`` has
                no ``len``.

        Raises:
            CancelledError: ``cancel`` was set.
            FaceprintError: A model failure (per-image problems are results instead).
        """
        options = options if options is not None else AnalyzeOptions()
        count = total if total is not None else (len(items) if isinstance(items, Sized) else None)
        executor = self._executor_for(count)
        program = self._program(executor)
        return self._stream(items, options, order, progress, cancel, count, executor, program)

    def _stream(
        self,
        items: Iterable[AnalyzeItem],
        options: AnalyzeOptions,
        order: Literal["input", "completed"],
        progress: Callable[[AnalyzeProgress], None] | None,
        cancel: threading.Event | None,
        count: int | None,
        executor: Executor,
        program: _AnalyzeProgram | _Shared,
    ) -> Iterator[ImageResult]:
        state = _StreamState()
        limits = self._config.limits

        def tasks() -> Iterator[tuple[int, _Task]]:
            # Items are read here, lazily, as the executor asks for work; failures and duplicates never
            # become tasks.
            for index, item in enumerate(items):
                state.keys.append(item.key)
                if cancel is not None and cancel.is_set():
                    return
                payload, digest, error = _read(item, limits)
                if error is not None:
                    state.ready[index] = ImageResult.failed(item.key, index, error, sha256=digest)
                    continue
                if digest is not None and item.detections is None:
                    if digest in state.outcomes:
                        state.ready[index] = _keyed(state.outcomes[digest], item.key, index, digest)
                        continue
                    if digest in state.waiting:
                        state.waiting[digest].append(index)
                        continue
                    state.waiting[digest] = []
                state.first_of[index] = digest
                if payload is None:  # _read gives a payload whenever it gives no error
                    continue
                yield index, _Task(name=item.key, payload=payload, detections=item.detections, options=options)

        next_index = 0
        failed = 0
        done = 0

        def emit(result: ImageResult) -> ImageResult:
            nonlocal failed, done
            done += 1
            if not result.ok:
                failed += 1
            if progress is not None:
                progress(AnalyzeProgress(done=done, total=count, failed=failed))
            return result

        for index, outcome in executor.run(program, tasks(), cancel=cancel):
            digest = state.first_of.pop(index)
            key = state.keys[index]
            state.ready[index] = _keyed(outcome, key, index, digest)
            if digest is not None:
                state.outcomes[digest] = outcome
                for other in state.waiting.pop(digest, []):
                    state.ready[other] = _keyed(outcome, state.keys[other], other, digest)
            if order == "completed":
                for ready_index in sorted(state.ready):
                    yield emit(state.ready.pop(ready_index))
                continue
            while next_index in state.ready:
                yield emit(state.ready.pop(next_index))
                next_index += 1
        # Items that never became tasks (failures, duplicates) after the last task.
        for ready_index in sorted(state.ready):
            yield emit(state.ready.pop(ready_index))
        if cancel is not None and cancel.is_set():
            raise CancelledError("cancelled")


@dataclass(slots=True)
class _StreamState:
    keys: list[str]
    ready: dict[int, ImageResult]
    outcomes: dict[str, _Outcome]
    waiting: dict[str, list[int]]
    first_of: dict[int, str | None]

    def __init__(self) -> None:
        self.keys = []
        self.ready = {}
        self.outcomes = {}
        self.waiting = {}
        self.first_of = {}


def _keyed(outcome: _Outcome, key: str, index: int, digest: str | None) -> ImageResult:
    message = outcome.error_message
    if message is not None and key != outcome.name and message.startswith(f"{outcome.name}:"):
        # Identical bytes under two names share one outcome; each name gets a message naming itself.
        message = f"{key}:{message[len(outcome.name) + 1 :]}"
    return ImageResult(
        key=key,
        index=index,
        size_wh=outcome.size_wh,
        faces=outcome.faces,
        faces_found=outcome.faces_found,
        error_code=outcome.error_code,
        error_message=message,
        sha256=digest,
    )


_Read = tuple[bytes | np.ndarray | None, str | None, FaceprintError | None]


def _read(item: AnalyzeItem, limits: ImageLimits) -> _Read:
    source = item.source
    try:
        if isinstance(source, FaceprintError):
            return None, None, source
        if isinstance(source, np.ndarray):
            return source, None, None
        if isinstance(source, bytes):
            data = source
        elif isinstance(source, Path):
            data = read_image_file(source, limits=limits)
        else:
            data = source()
    except InputError as err:
        return None, None, err
    return data, hashlib.sha256(data).hexdigest(), None


@dataclass(frozen=True, slots=True)
class _Shared:
    pipeline: EmbeddingPipeline
    program: _AnalyzeProgram

    def build(self) -> EmbeddingPipeline:
        return self.pipeline

    def run(self, state: EmbeddingPipeline, task: _Task) -> _Outcome:
        return self.program.run(state, task)

    def failed(self, task: _Task, message: str, *, crashed: bool) -> _Outcome:
        return self.program.failed(task, message, crashed=crashed)


# --- pairs of images ------------------------------------------------------------------------------------


def compare_results(pipeline: Compares, a: ImageResult, b: ImageResult, *, face: FaceMode) -> Comparison:
    """Compare two analysed photos: their selected faces, or with ``best-match`` the most similar pair.

    Both results must hold faceprints (check ``ok`` first); for ``best-match`` they must have been
    analysed with ``face="best-match"`` (or ``"all"``) so that every face was embedded.

    Raises:
        ImageFailedError: A result without faceprints (failed photos are not compared).

    Example:
        >>> from faceprint.testing import FakePipeline, make_face_png
        >>> with Analyzer(workers=1, pipeline_factory=lambda c: FakePipeline(c)) as analyzer:
        ...     red, = analyzer.analyze([AnalyzeItem("red.png", make_face_png((200, 20, 20)))])
        ...     compare_results(analyzer, red, red, face="primary").is_match
        True
    """
    prints_a, prints_b = a.faceprints, b.faceprints
    if not prints_a or not prints_b:
        raise ImageFailedError("no faceprints to compare")
    if face != "best-match":
        return pipeline.compare(prints_a[0], prints_b[0])
    best: Comparison | None = None
    for print_a in prints_a:
        for print_b in prints_b:
            comparison = pipeline.compare(print_a, print_b)
            if best is None or comparison.similarity > best.similarity:
                best = comparison
    if best is None:  # unreachable: both tuples are non-empty
        raise ImageFailedError("no faceprints to compare")
    return best
