"""Embed many photos once each, in this process or a pool of worker processes, with a progress bar.

The engine behind every batch job that turns a set of photos into faceprints (``faceprint pairs``,
``faceprint evaluate``, ``faceprint calibrate``):

- photos arrive as ``(key, source)`` items, where the source is the photo's bytes, a zero-argument
  callable that reads them (called only when the photo is about to be embedded), or a
  :class:`~faceprint.errors.FaceprintError` when reading already failed;
- photos are keyed by the sha256 of their bytes, so the same photo under two keys is decoded and embedded
  once per :meth:`ImageEmbeddingEngine.embed` call;
- every photo ends as an :class:`ImageOutcome`: faceprints (selected face first) or an error code. Input
  problems (unreadable, undecodable, no face, a native failure on one odd photo) never stop the run; a
  model failure or a dying worker does;
- with ``workers > 1`` a spawn process pool embeds in parallel: each worker builds its own pipeline once,
  with one inference thread (N workers use N cores, not N²); photos travel as bytes and come back as
  outcomes, and at most ``2 × workers`` photos are in flight, which bounds memory. Images are never kept:
  only faceprints are.

How two photos' outcomes are compared under a face mode (``primary``, ``largest``, ``best-match``) lives
here too (:func:`compare_outcomes`), so every job that compares photos does it the same way.

Example:
    >>> from faceprint.testing import fake_pipeline_factory, make_face_png
    >>> with ImageEmbeddingEngine(workers=1, quiet=True, pipeline_factory=fake_pipeline_factory) as engine:
    ...     results = engine.embed([("a", make_face_png((200, 20, 20))), ("b", make_face_png((200, 20, 20)))])
    >>> results["a"].faces_found, results.embedded   # two keys, one distinct photo
    (1, 1)
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import os
import pickle
import signal
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sized
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Generic, Literal, Protocol, Self, TypeVar, get_args

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from faceprint.compare import Comparator
from faceprint.errors import EXIT_INTERNAL, FaceprintError, InputError, NoFaceError, UsageError
from faceprint.io.image import ImageLimits, decode_image
from faceprint.models.spec import ModelSpec
from faceprint.pipeline import PipelineConfig
from faceprint.types import Comparison, Face, Faceprint, RGBImage

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
FACE_MODES: tuple[FaceMode, ...] = get_args(FaceMode)
_THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")

K = TypeVar("K", bound=Hashable)

ImageLoader = Callable[[], bytes]
"""Reads one photo's bytes when called; raises an :class:`~faceprint.errors.InputError` if it cannot."""
ImageSource = bytes | ImageLoader | FaceprintError
"""A photo's bytes, a loader of them, or the error that reading it already gave."""


class ImageFailedError(FaceprintError):
    """An unexpected failure while decoding or embedding one photo; recorded for it, the run goes on."""

    code = "internal_error"
    exit_code = EXIT_INTERNAL


class WorkerFailedError(FaceprintError):
    """A worker process died (killed for memory, or a crash in a native library); the run stops."""

    code = "worker_failed"
    exit_code = EXIT_INTERNAL


class EmbeddingPipeline(Protocol):
    """What the engine and its callers need of :class:`faceprint.pipeline.Pipeline` (and the test fake)."""

    @property
    def spec(self) -> ModelSpec: ...

    @property
    def comparator(self) -> Comparator: ...

    def embed_faces(self, image: RGBImage) -> list[Face]: ...

    def embed_main_face(self, image: RGBImage) -> tuple[Face | None, int]: ...

    def compare(self, a: Faceprint, b: Faceprint) -> Comparison: ...


PipelineFactory = Callable[[PipelineConfig], EmbeddingPipeline]
"""Builds a pipeline from a config; must be a picklable (module-level) callable when ``workers > 1``."""


def default_pipeline_factory(config: PipelineConfig) -> EmbeddingPipeline:
    """The real pipeline (models verified at load)."""
    from faceprint.pipeline import load_pipeline

    return load_pipeline(config)


def worker_pipeline_config(config: PipelineConfig) -> PipelineConfig:
    """The config each pool worker builds its pipeline from: one inference thread, so N workers use N cores.

    Example:
        >>> worker_pipeline_config(PipelineConfig(intra_op_threads=8)).intra_op_threads
        1
    """
    return replace(config, intra_op_threads=1)


def available_cores() -> int:
    """CPU cores this process may run on (respects affinity / container limits where the OS tells).

    Example:
        >>> available_cores() >= 1
        True
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


# --- face modes --------------------------------------------------------------------------------------------


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
    """The pipeline config that puts the face ``face`` asks for first in every outcome.

    ``primary`` and ``largest`` are the pipeline's own ``face_selection``; ``best-match`` compares every
    face with every face, so which comes first does not matter and ``config`` is kept as it is.

    Example:
        >>> pipeline_config_for_face(PipelineConfig(), "largest").face_selection
        'largest'
    """
    if face == "best-match" or config.face_selection == face:
        return config
    return replace(config, face_selection=face)


def compare_outcomes(pipeline: EmbeddingPipeline, a: ImageOutcome, b: ImageOutcome, *, face: FaceMode) -> Comparison:
    """Compare two embedded photos: their selected faces, or with ``best-match`` the most similar pair of faces.

    Both outcomes must hold faceprints (check ``error_code`` first). For ``best-match`` they must have
    been embedded with ``keep_all_faces=True``.

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


# --- one photo ------------------------------------------------------------------------------------------


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

    @property
    def ok(self) -> bool:
        """True when the photo gave at least one faceprint."""
        return self.error_code is None

    @classmethod
    def failed(cls, error: FaceprintError, *, faces_found: int | None = None) -> ImageOutcome:
        return cls(faces_found=faces_found, error_code=error.code, error_message=error.message)


def embed_image(
    pipeline: EmbeddingPipeline,
    data: bytes,
    *,
    name: str,
    limits: ImageLimits | None = None,
    keep_all_faces: bool = False,
) -> ImageOutcome:
    """Decode and embed one photo; input problems become an error outcome, not an exception.

    Args:
        pipeline: Does the detection and embedding.
        data: The photo's bytes.
        name: Its name, for messages.
        limits: Decoding limits (bytes, pixels).
        keep_all_faces: Keep every face's faceprint (``best-match``), else only the selected one.

    Raises:
        FaceprintError: non-input failures (model errors) that make the whole run pointless.

    Example:
        >>> from faceprint.testing import FakePipeline, make_blank_png
        >>> embed_image(FakePipeline(), make_blank_png(), name="grey.png").error_code
        'no_face'
    """
    try:
        image = decode_image(data, limits=limits, name=name)
        if keep_all_faces:
            faces = pipeline.embed_faces(image)
            faces_found = len(faces)
        else:
            # One face is compared: embed only it, after the cheap detection pass (Pipeline.embed_main_face).
            main_face, faces_found = pipeline.embed_main_face(image)
            faces = [] if main_face is None else [main_face]
    except InputError as err:
        return ImageOutcome.failed(err)
    except FaceprintError:
        raise
    except Exception as err:  # a native-library failure on one odd photo must not stop 10,000 others
        return ImageOutcome.failed(ImageFailedError(f"{name}: {type(err).__name__}: {err}"))
    faceprints = tuple(face.faceprint for face in faces if face.faceprint is not None)
    if not faceprints:
        return ImageOutcome.failed(NoFaceError(f"{name}: no face found"), faces_found=faces_found)
    return ImageOutcome(faceprints=faceprints, faces_found=faces_found)


# --- worker processes -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _WorkerSetup:
    factory: PipelineFactory
    config: PipelineConfig
    keep_all_faces: bool


@functools.lru_cache(maxsize=1)
def _worker_pipeline(setup_blob: bytes) -> tuple[EmbeddingPipeline, _WorkerSetup]:
    # The one per-process pipeline of a pool worker: built on first use, reused for every photo. Keyed by
    # the pickled setup (picklable configs need not be hashable). Only worker processes ever call this.
    setup: _WorkerSetup = pickle.loads(setup_blob)
    return setup.factory(setup.config), setup


def _init_worker(setup_blob: bytes) -> None:
    # Native thread pools read these when they start; the pipeline's own (onnxruntime) thread count comes
    # from the config's intra_op_threads=1.
    for var in _THREAD_ENV_VARS:
        os.environ[var] = "1"
    # Ctrl-C goes to the whole process group: let the parent decide, instead of N tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _worker_pipeline(setup_blob)
    except Exception:
        # A failing initializer breaks the pool with no message; the first task builds again and raises
        # the real error.
        pass


def _embed_in_worker(setup_blob: bytes, data: bytes, name: str) -> ImageOutcome:
    pipeline, setup = _worker_pipeline(setup_blob)
    return embed_image(pipeline, data, name=name, limits=setup.config.limits, keep_all_faces=setup.keep_all_faces)


# --- the engine -----------------------------------------------------------------------------------------


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


def _progress(quiet: bool) -> Progress:
    return Progress(
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
    """Embeds photos once each, in this process or in a process pool sized to the work; see the module doc.

    Use it as a context manager: entering builds the pipeline (so a missing or corrupt model fails before
    any photo is read) and shows the progress bar on stderr; leaving shuts the pool down and removes the
    bar. The pool is started on the first :meth:`embed` that has more than one photo and grows, up to
    ``workers``, to the size a later call can use.

    Args:
        pipeline_config: What every pipeline is built from (workers get one inference thread each).
        workers: Worker processes; ``None`` means every available core, 1 embeds in this process.
        quiet: No progress bar.
        pipeline_factory: Builds the pipelines (default: the real one); must be picklable for ``workers > 1``.
        keep_all_faces: Keep every face's faceprint (for ``best-match``), else only the selected one.

    Raises:
        UsageError: ``workers`` below 1.

    Example:
        >>> with ImageEmbeddingEngine(PipelineConfig(), workers=2) as engine:              # doctest: +SKIP
        ...     results = engine.embed((p.name, p.read_bytes) for p in Path("photos").glob("*.jpg"))
        >>> {name: outcome.error_code for name, outcome in results.failed().items()}       # doctest: +SKIP
        {'blurry.jpg': 'no_face'}
    """

    def __init__(
        self,
        pipeline_config: PipelineConfig | None = None,
        *,
        workers: int | None = None,
        quiet: bool = False,
        pipeline_factory: PipelineFactory | None = None,
        keep_all_faces: bool = False,
    ) -> None:
        if workers is not None and workers < 1:
            raise UsageError(f"workers must be at least 1, got {workers}")
        self._config = pipeline_config if pipeline_config is not None else PipelineConfig()
        self._factory = pipeline_factory if pipeline_factory is not None else default_pipeline_factory
        self._max_workers = workers if workers is not None else available_cores()
        self._keep_all = keep_all_faces
        self._progress = _progress(quiet)
        self._pipeline: EmbeddingPipeline | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._pool_size = 0
        self._blob: bytes | None = None

    # --- lifetime -----------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        # Built first, in this process: with workers > 1 this one only compares (cheap) and names the model;
        # the workers build their own for embedding.
        self._pipeline = self._factory(self._config)
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            self._close_pool()
        finally:
            self._progress.stop()

    @property
    def pipeline(self) -> EmbeddingPipeline:
        """The pipeline built on entering (for comparing, and for the model's spec and threshold).

        Raises:
            UsageError: The engine was not entered (``with ImageEmbeddingEngine(...) as engine``).
        """
        if self._pipeline is None:
            raise UsageError("use the engine in a `with` block before asking for its pipeline")
        return self._pipeline

    @property
    def max_workers(self) -> int:
        """The most worker processes this engine will start."""
        return self._max_workers

    @property
    def keep_all_faces(self) -> bool:
        return self._keep_all

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _setup_blob(self) -> bytes:
        if self._blob is None:
            setup = _WorkerSetup(
                factory=self._factory,
                config=worker_pipeline_config(self._config),
                keep_all_faces=self._keep_all,
            )
            try:
                self._blob = pickle.dumps(setup)
            except (pickle.PicklingError, AttributeError, TypeError) as err:
                raise UsageError(
                    f"the pipeline factory cannot be sent to worker processes ({err}); use workers=1"
                ) from err
        return self._blob

    def _ensure_pool(self, wanted: int) -> ProcessPoolExecutor | None:
        size = min(wanted, self._max_workers)
        if self._pool is None and size <= 1:
            return None
        if self._pool is None or size > self._pool_size:
            blob = self._setup_blob()
            self._close_pool()
            # spawn, not fork: the parent may hold threads (progress bar, onnxruntime) that fork would copy
            # mid-lock.
            self._pool = ProcessPoolExecutor(
                max_workers=size,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(blob,),
            )
            self._pool_size = size
        return self._pool

    # --- work ---------------------------------------------------------------------------------------------

    def embed(
        self,
        items: Iterable[tuple[K, ImageSource]],
        *,
        total: int | None = None,
        description: str = "images",
    ) -> EmbeddedImages[K]:
        """Embed every photo of ``items``, each distinct content once; one progress-bar line per call.

        Args:
            items: ``(key, source)`` pairs; the key names the photo in messages (``str(key)``) and in the
                result. Sources are read one at a time, just before their photo is embedded, and dropped
                once it is sent or embedded.
            total: How many items there are, for the bar and the pool size; ``None`` uses ``len(items)``
                when ``items`` has one, else assumes enough to use every worker.
            description: The progress bar's label.

        Returns:
            An outcome per key, in the order given.

        Raises:
            WorkerFailedError: A worker process died.
            UsageError: The engine was not entered, or a factory that cannot be pickled with ``workers > 1``.
            FaceprintError: A model failure (input problems become error outcomes instead).
        """
        pipeline = self.pipeline
        count = total if total is not None else (len(items) if isinstance(items, Sized) else None)
        task = self._progress.add_task(description, total=count)
        pool = self._ensure_pool(count if count is not None else self._max_workers)
        by_digest: dict[str, ImageOutcome] = {}
        failed: dict[K, ImageOutcome] = {}
        digest_of: dict[K, str] = {}
        order: dict[K, None] = {}
        in_flight: dict[Future[ImageOutcome], str] = {}
        pending: set[str] = set()
        # Two per worker keeps every worker busy while bounding the photo bytes held by the executor.
        max_in_flight = 2 * self._pool_size if pool is not None else 1

        def collect(futures: set[Future[ImageOutcome]]) -> None:
            for future in futures:
                digest = in_flight.pop(future)
                pending.discard(digest)
                try:
                    by_digest[digest] = future.result()
                except BrokenProcessPool as err:
                    raise WorkerFailedError(
                        "a worker process died (out of memory, or a crash in a native library); "
                        "try fewer workers (--workers 1)"
                    ) from err
                self._progress.advance(task, 1)

        for key, source in items:
            order[key] = None
            data = _read(source)
            if isinstance(data, FaceprintError):
                failed[key] = ImageOutcome.failed(data)
                digest_of.pop(key, None)
                self._progress.advance(task, 1)
                continue
            digest = hashlib.sha256(data).hexdigest()
            digest_of[key] = digest
            failed.pop(key, None)
            if digest in by_digest or digest in pending:
                self._progress.advance(task, 1)
                continue
            if pool is None:
                by_digest[digest] = embed_image(
                    pipeline, data, name=str(key), limits=self._config.limits, keep_all_faces=self._keep_all
                )
                self._progress.advance(task, 1)
                continue
            in_flight[pool.submit(_embed_in_worker, self._setup_blob(), data, str(key))] = digest
            pending.add(digest)
            del data  # the executor holds these bytes until the result is back; max_in_flight bounds them
            if len(in_flight) >= max_in_flight:
                done, _ = wait(set(in_flight), return_when=FIRST_COMPLETED)
                collect(done)
        if in_flight:
            collect(set(in_flight))
        outcomes = {key: failed[key] if key in failed else by_digest[digest_of[key]] for key in order}
        return EmbeddedImages(outcomes, embedded=len(by_digest))


def _read(source: ImageSource) -> bytes | FaceprintError:
    if isinstance(source, FaceprintError):
        return source
    if isinstance(source, bytes):
        return source
    try:
        return source()
    except InputError as err:
        return err
