"""Evaluate or calibrate the pipeline on a labelled pair list: photos in, a report or a ``calib.json`` out.

Both :func:`evaluate_pairs` and :func:`calibrate_pairs` walk the same path:

1. read the pair list (:func:`~faceprint.evaluate.pairs_list.read_pairs_list`: LFW View 1 ``N``, LFW
   View 2 ``10 300`` with its folds, or a ``file1,file2,label[,fold]`` CSV); paths are relative to the
   images folder and may not leave it;
2. embed every distinct image once with the :class:`~faceprint.batch.engine.ImageEmbeddingEngine`
   (worker processes, every core by default; the same photo under two names once);
3. compare each pair under the face mode (``primary``, ``largest``, ``best-match``; the rules of
   :func:`~faceprint.batch.engine.compare_outcomes`, the same as ``faceprint pairs``);
4. count failure to enrol: an image that cannot be read or decoded, or shows no face, is listed with
   its error code, and every pair that uses it is counted as not scored; nothing is dropped silently.

Then :func:`evaluate_pairs` builds an :class:`~faceprint.evaluate.report.EvaluationReport` at the
pipeline's calibration and threshold (those of ``pipeline.calibration_path`` when set), and
:func:`calibrate_pairs` fits a Platt calibration, the best-accuracy threshold and FAR thresholds on the
scored pairs, recording in the provenance what was fitted on and how.

Example:
    >>> from faceprint.testing import fake_pipeline_factory
    >>> options = EvaluationOptions(workers=1, quiet=True)
    >>> report = evaluate_pairs(Path("pairs.csv"), Path("photos"), options=options,        # doctest: +SKIP
    ...                         pipeline_factory=fake_pipeline_factory)
    >>> report.failure_to_enrol_count                                                      # doctest: +SKIP
    0
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal

from faceprint import __version__
from faceprint.analyze import Compares
from faceprint.batch.engine import (
    FaceMode,
    ImageEmbeddingEngine,
    ImageOutcome,
    ImageSource,
    PipelineFactory,
    check_face_mode,
    compare_outcomes,
    default_pipeline_factory,
    pipeline_config_for_face,
)
from faceprint.errors import (
    ContractMismatchError,
    DecodeError,
    ImageTooLargeError,
    InputError,
    MissingFileError,
    UsageError,
)
from faceprint.evaluate.calibrate import (
    CalibrationRecord,
    load_calibration,
    make_calibration_record,
)
from faceprint.evaluate.metrics import DEFAULT_FOLD_COUNT, DEFAULT_TARGET_FARS
from faceprint.evaluate.pairs_list import LabeledPair, read_pairs_list
from faceprint.evaluate.quality_calibration import make_quality_calibration_record
from faceprint.evaluate.report import EvaluationReport, FailedImage, build_evaluation_report
from faceprint.io.image import ImageLimits
from faceprint.models.spec import Calibration
from faceprint.pipeline import PipelineConfig
from faceprint.types import FaceQuality

__all__ = [
    "CALIBRATION_TARGET_FARS",
    "EvaluationOptions",
    "NotEnoughPairsError",
    "UnsafeImagePathError",
    "calibrate_pairs",
    "evaluate_pairs",
]

CalibrationMethod = Literal["platt", "quality"]
CALIBRATION_METHODS: tuple[CalibrationMethod, ...] = ("platt", "quality")

CALIBRATION_TARGET_FARS: tuple[float, ...] = (1e-2, 1e-3, 1e-4)
"""FARs a ``calib.json`` gets thresholds for (each only where the impostor count resolves it)."""
THRESHOLD_METHOD = "best_accuracy_on_these_pairs"


class UnsafeImagePathError(InputError):
    """A pair list names an image outside the images folder (an absolute path or one through ``..``)."""

    code: ClassVar[str] = "unsafe_path"


class NotEnoughPairsError(InputError):
    """Too few pairs could be scored to measure or fit anything (both genuine and impostor pairs are needed)."""

    code: ClassVar[str] = "not_enough_pairs"


@dataclass(frozen=True, slots=True)
class EvaluationOptions:
    """How to embed and compare the images of a pair list.

    Example:
        >>> EvaluationOptions(face="largest").pipeline.face_selection
        'largest'
    """

    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    face: FaceMode = "primary"
    """``primary``/``largest`` compare one face per image (they set ``pipeline.face_selection``);
    ``best-match`` the most similar pair of faces."""
    workers: int | None = None
    """Worker processes; ``None`` means every available core. 1 runs in this process."""
    quiet: bool = False
    """No progress bar."""
    dataset: str | None = None
    """The name recorded for the pair list; ``None`` is its file name."""

    def __post_init__(self) -> None:
        check_face_mode(self.face)
        # Frozen, so the derived pipeline config is set the way a frozen dataclass allows.
        object.__setattr__(self, "pipeline", pipeline_config_for_face(self.pipeline, self.face))
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"workers must be at least 1, got {self.workers}")


# --- reading images ----------------------------------------------------------------------------------------


def _read_image_file(images_dir: Path, relative: str, limits: ImageLimits) -> bytes:
    pure = PurePosixPath(relative)
    # Lexical, not resolve(): a symlinked images folder (or LFW person folder) is fine, leaving it by name is not.
    if pure.is_absolute() or ".." in pure.parts:
        raise UnsafeImagePathError(
            f"{relative}: image paths must be relative to the images folder and stay inside it",
            details={"name": relative},
        )
    path = images_dir.joinpath(*pure.parts)
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ImageTooLargeError(
                f"{relative}: {size} bytes exceeds the limit of {limits.max_bytes}",
                details={"name": relative, "bytes": size, "max_bytes": limits.max_bytes},
            )
        return path.read_bytes()
    except FileNotFoundError as err:
        raise MissingFileError(f"{relative}: no such file in {images_dir}", details={"name": relative}) from err
    except IsADirectoryError as err:
        raise DecodeError(f"{relative}: is a folder, not an image", details={"name": relative}) from err
    except OSError as err:
        raise InputError(f"{relative}: cannot read: {err.strerror or err}", details={"name": relative}) from err


def _image_sources(images_dir: Path, paths: Sequence[str], limits: ImageLimits) -> list[tuple[str, ImageSource]]:
    # Loaders, not bytes: each file is read only when the engine is ready to embed it.
    return [(relative, functools.partial(_read_image_file, images_dir, relative, limits)) for relative in paths]


# --- scoring pairs -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ScoredPairs:
    pairs: tuple[LabeledPair, ...]
    similarities: tuple[float | None, ...]
    """One per pair, ``None`` where an image of the pair failed."""
    qualities: tuple[tuple[FaceQuality | None, FaceQuality | None], ...]
    """The compared faces' quality per pair (``None`` where not measured or not scored)."""
    failed_images: tuple[FailedImage, ...]
    image_count: int
    dataset: str
    model_id: str
    contract_id: str
    calibration: Calibration
    threshold: float

    @property
    def labels(self) -> list[bool]:
        return [pair.is_same for pair in self.pairs]

    def scored_qualities(self) -> tuple[list[FaceQuality | None], list[FaceQuality | None]]:
        """The compared faces' qualities of the scored pairs only, in the order of :meth:`scored`."""
        kept = [q for value, q in zip(self.similarities, self.qualities, strict=True) if value is not None]
        return [a for a, _ in kept], [b for _, b in kept]

    def scored(self) -> tuple[list[float], list[bool]]:
        """Similarities and labels of the scored pairs only."""
        kept = [(value, pair.is_same) for value, pair in zip(self.similarities, self.pairs, strict=True)]
        return [value for value, _ in kept if value is not None], [label for value, label in kept if value is not None]

    def counts(self) -> dict[str, int]:
        scored_labels = self.scored()[1]
        genuine = sum(pair.is_same for pair in self.pairs)
        return {
            "total": len(self.pairs),
            "genuine": genuine,
            "impostor": len(self.pairs) - genuine,
            "scored": len(scored_labels),
            "scored_genuine": sum(scored_labels),
            "scored_impostor": len(scored_labels) - sum(scored_labels),
            "unscored": len(self.pairs) - len(scored_labels),
        }

    def require_both_classes(self, purpose: str, *, minimum: int = 1) -> None:
        counts = self.counts()
        if counts["scored_genuine"] >= minimum and counts["scored_impostor"] >= minimum:
            return
        codes = Counter(image.error_code for image in self.failed_images)
        failures = ", ".join(f"{code} {count}" for code, count in sorted(codes.items())) or "none"
        raise NotEnoughPairsError(
            f"{purpose} needs at least {minimum} scored genuine and {minimum} scored impostor pairs, but only "
            f"{counts['scored_genuine']} genuine and {counts['scored_impostor']} impostor pairs of "
            f"{counts['total']} could be scored "
            f"({len(self.failed_images)} of {self.image_count} images failed: {failures})",
            details={**counts, "failed_images": len(self.failed_images)},
        )


def _check_paths(pairs_path: Path, images_dir: Path) -> None:
    if not pairs_path.is_file():
        raise UsageError(f"pair list {pairs_path} does not exist or is not a file")
    if not images_dir.is_dir():
        raise UsageError(f"images folder {images_dir} does not exist or is not a folder")


def _compared(
    pipeline: Compares, a: ImageOutcome, b: ImageOutcome, face: FaceMode
) -> tuple[float, tuple[FaceQuality | None, FaceQuality | None]]:
    """The similarity :func:`compare_outcomes` gives, and the qualities of the two faces it compared."""
    similarity = compare_outcomes(pipeline, a, b, face=face).similarity
    if face != "best-match":
        return similarity, (a.faceprints[0].quality, b.faceprints[0].quality)
    for print_a in a.faceprints:
        for print_b in b.faceprints:
            # The pair compare_outcomes chose: the first with the best similarity, found the same way.
            if pipeline.compare(print_a, print_b).similarity == similarity:
                return similarity, (print_a.quality, print_b.quality)
    return similarity, (None, None)


def _score_pairs(
    pairs_path: Path,
    images_dir: Path,
    options: EvaluationOptions,
    pipeline_factory: PipelineFactory | None,
    calibration_record: CalibrationRecord | None,
) -> _ScoredPairs:
    pairs = tuple(read_pairs_list(pairs_path))
    paths = list(dict.fromkeys(path for pair in pairs for path in (pair.path_a, pair.path_b)))
    # Looked up here, not bound as a default argument, so tests can swap this module's default.
    factory = pipeline_factory if pipeline_factory is not None else default_pipeline_factory
    dataset = options.dataset if options.dataset is not None else pairs_path.name
    with ImageEmbeddingEngine(
        options.pipeline,
        workers=options.workers,
        quiet=options.quiet,
        pipeline_factory=factory,
        keep_all_faces=options.face == "best-match",
    ) as engine:
        pipeline = engine.head
        spec = pipeline.spec
        if calibration_record is not None and calibration_record.contract_id != spec.contract_id:
            raise ContractMismatchError(
                f"the calibration file was fitted for {calibration_record.contract_id!r}, not {spec.contract_id!r}",
                details={"file": calibration_record.contract_id, "expected": spec.contract_id},
            )
        outcomes = engine.embed(
            _image_sources(images_dir, paths, options.pipeline.limits), total=len(paths), description=dataset
        )
    similarities: list[float | None] = []
    qualities: list[tuple[FaceQuality | None, FaceQuality | None]] = []
    for pair in pairs:
        outcome_a, outcome_b = outcomes[pair.path_a], outcomes[pair.path_b]
        if not (outcome_a.ok and outcome_b.ok):
            similarities.append(None)
            qualities.append((None, None))
            continue
        similarity, quality_pair = _compared(pipeline, outcome_a, outcome_b, options.face)
        similarities.append(similarity)
        qualities.append(quality_pair)
    failed = tuple(
        FailedImage(path=path, error_code=outcome.error_code or "", message=outcome.error_message or "")
        for path, outcome in outcomes.failed().items()
    )
    comparator = pipeline.comparator
    return _ScoredPairs(
        pairs=pairs,
        similarities=tuple(similarities),
        qualities=tuple(qualities),
        failed_images=failed,
        image_count=len(paths),
        dataset=dataset,
        model_id=spec.id,
        contract_id=spec.contract_id,
        calibration=calibration_record.calibration if calibration_record is not None else comparator.calibration,
        threshold=calibration_record.threshold if calibration_record is not None else comparator.threshold,
    )


# --- the two jobs ----------------------------------------------------------------------------------------


def evaluate_pairs(
    pairs_path: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    *,
    options: EvaluationOptions | None = None,
    target_fars: Sequence[float] = DEFAULT_TARGET_FARS,
    fold_count: int = DEFAULT_FOLD_COUNT,
    pipeline_factory: PipelineFactory | None = None,
    created_at: dt.datetime | None = None,
) -> EvaluationReport:
    """Measure the pipeline on a labelled pair list, at its calibration and operating threshold.

    The calibration and threshold are those of ``options.pipeline.calibration_path`` when it is set (the
    file must be for this model's contract), else the model's own. Accuracy is also given as a k-fold
    mean: on the list's folds (LFW View 2, a CSV ``fold`` column), else on ``fold_count`` assigned ones.

    Args:
        pairs_path: LFW ``pairs*.txt`` (View 1 or 2) or a ``file1,file2,label[,fold]`` CSV.
        images_dir: The folder the list's image paths are relative to.
        options: Pipeline config, face mode, workers, progress bar, dataset name.
        target_fars: FARs for TAR@FAR.
        fold_count: Folds to assign when the list defines none (fewer when there are fewer scored pairs
            of a kind).
        pipeline_factory: Builds the pipelines (tests pass :func:`faceprint.testing.fake_pipeline_factory`).
        created_at: Recorded in the report; ``None`` is now (UTC).

    Returns:
        The report; write it with :func:`~faceprint.evaluate.report.write_report`.

    Raises:
        UsageError: A missing pair list or images folder, bad options.
        PairsListFormatError: A malformed pair list.
        NotEnoughPairsError: Too many failed images to leave both genuine and impostor pairs.
        ContractMismatchError: A calibration file fitted for another model.
        ModelError: The models cannot be loaded.

    Example:
        >>> report = evaluate_pairs("pairsDevTest.txt", "lfw/images")   # doctest: +SKIP
        >>> round(report.kfold.mean_accuracy, 3)                         # doctest: +SKIP
        0.99
    """
    options = options if options is not None else EvaluationOptions()
    pairs_file, images = Path(pairs_path), Path(images_dir)
    _check_paths(pairs_file, images)
    record = None
    calibration_path = options.pipeline.calibration_path
    if calibration_path is not None:
        if not Path(calibration_path).is_file():
            # A usage error, as everywhere else a --calibration file is missing (see pipeline.load_pipeline).
            raise UsageError(f"calibration file {calibration_path} does not exist")
        # Read before any model is built: a wrong file fails in a second, not after the embedding.
        record = load_calibration(calibration_path)
    scored = _score_pairs(pairs_file, images, options, pipeline_factory, record)
    # k-fold accuracy tests each fold on pairs held out from the threshold choice: two of each kind at least.
    scored.require_both_classes("an evaluation", minimum=2)
    counts = scored.counts()
    if all(pair.fold is None for pair in scored.pairs):
        # Assigned folds are stratified: a short list gets fewer folds rather than folds of one kind only.
        fold_count = max(2, min(fold_count, counts["scored_genuine"], counts["scored_impostor"]))
    return build_evaluation_report(
        scored.similarities,
        scored.labels,
        model_id=scored.model_id,
        contract_id=scored.contract_id,
        dataset=scored.dataset,
        folds=[pair.fold for pair in scored.pairs],
        calibration=scored.calibration,
        threshold=scored.threshold,
        failed_images=scored.failed_images,
        image_count=scored.image_count,
        target_fars=target_fars,
        fold_count=fold_count,
        package_version=__version__,
        created_at=created_at,
        qualities_a=[a for a, _ in scored.qualities],
        qualities_b=[b for _, b in scored.qualities],
    )


def calibrate_pairs(
    pairs_path: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    *,
    options: EvaluationOptions | None = None,
    target_fars: Sequence[float] = CALIBRATION_TARGET_FARS,
    pipeline_factory: PipelineFactory | None = None,
    fitted_on: dt.date | None = None,
    method: CalibrationMethod = "platt",
) -> CalibrationRecord:
    """Fit a ``calib.json`` for the pipeline's model on a labelled pair list.

    On the scored pairs: a Platt sigmoid (similarity -> P(same person)), the operating threshold of best
    accuracy, and the minimum similarity for each of ``target_fars`` the impostor count can resolve
    (1e-4 needs 10,000 impostor pairs). The provenance records the pair list's file name, pair counts
    (total, scored, unscored), failed images with their codes, the date, the method, the face mode, flip
    averaging and the package version. Save it with :func:`~faceprint.evaluate.calibrate.save_calibration`.

    Args:
        pairs_path: LFW ``pairs*.txt`` (View 1 or 2) or a ``file1,file2,label[,fold]`` CSV.
        images_dir: The folder the list's image paths are relative to.
        options: Pipeline config, face mode, workers, progress bar, dataset name. A
            ``pipeline.calibration_path`` is ignored: similarities do not depend on it.
        target_fars: FARs to give thresholds for.
        pipeline_factory: Builds the pipelines (tests pass :func:`faceprint.testing.fake_pipeline_factory`).
        fitted_on: The date recorded; ``None`` is today (UTC).
        method: ``"platt"``, similarity only; or ``"quality"``, P(same | similarity, face qualities)
            (:mod:`faceprint.evaluate.quality_calibration`), which needs every scored face's quality.

    Raises:
        UsageError: A missing pair list or images folder, bad options, a fit that fails, or a quality fit
            on faceprints without quality.
        PairsListFormatError: A malformed pair list.
        NotEnoughPairsError: Too many failed images to leave both genuine and impostor pairs.
        ModelError: The models cannot be loaded.

    Example:
        >>> record = calibrate_pairs("pairsDevTrain.txt", "lfw/images")   # doctest: +SKIP
        >>> save_calibration(record, "calib.json")                          # doctest: +SKIP
    """
    options = options if options is not None else EvaluationOptions()
    pairs_file, images = Path(pairs_path), Path(images_dir)
    _check_paths(pairs_file, images)
    if options.pipeline.calibration_path is not None:
        # Fitting a new calibration must not need (or be refused for) an old one.
        options = replace(options, pipeline=replace(options.pipeline, calibration_path=None))
    scored = _score_pairs(pairs_file, images, options, pipeline_factory, None)
    scored.require_both_classes("a calibration")
    similarities, labels = scored.scored()
    if method == "quality":
        qualities_a, qualities_b = scored.scored_qualities()
        known_a = [q for q in qualities_a if q is not None]
        known_b = [q for q in qualities_b if q is not None]
        if len(known_a) != len(qualities_a) or len(known_b) != len(qualities_b):
            raise UsageError(
                "a quality-aware calibration needs the face quality of every scored pair, and this pipeline's "
                "faceprints carry none; fit with --method platt",
                details={"pairs_without_quality": len(qualities_a) - min(len(known_a), len(known_b))},
            )
        record = make_quality_calibration_record(
            similarities,
            labels,
            known_a,
            known_b,
            contract_id=scored.contract_id,
            dataset=scored.dataset,
            target_fars=target_fars,
            fitted_on=fitted_on,
        )
    elif method == "platt":
        record = make_calibration_record(
            similarities,
            labels,
            contract_id=scored.contract_id,
            dataset=scored.dataset,
            target_fars=target_fars,
            fitted_on=fitted_on,
        )
    else:
        raise UsageError(f"calibration method must be platt or quality, not {method!r}")
    provenance: dict[str, Any] = {
        **record.calibration.provenance,
        "dataset_file": pairs_file.name,
        "pairs": scored.counts(),
        "failure_to_enrol": {
            "count": len(scored.failed_images),
            "image_count": scored.image_count,
            "failed_images": [
                {"path": image.path, "error_code": image.error_code, "message": image.message}
                for image in scored.failed_images
            ],
        },
        "model_id": scored.model_id,
        "threshold_method": THRESHOLD_METHOD,
        "target_fars": [float(far) for far in target_fars],
        "face": options.face,
        "flip_average": options.pipeline.flip_average,
        "assume_cropped": options.pipeline.assume_cropped,
        "detector": options.pipeline.detector,
        "package_version": __version__,
    }
    return replace(record, calibration=replace(record.calibration, provenance=provenance))
