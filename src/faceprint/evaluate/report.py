"""Assemble an evaluation of scored pairs and write it as ``report.json``, ``report.md`` and PNG plots.

Pairs that could not be scored (an image without a face, an undecodable file, ...) arrive with similarity
``None``. They are counted and reported, never dropped silently:

- ranking metrics (ROC, AUC, EER, TAR@FAR, k-fold accuracy) and calibration quality are computed on the
  *scored* pairs only, since an unscored pair has no position in a ranking;
- accuracy at the operating threshold is reported twice: on the scored pairs, and on *all* pairs with
  every unscored pair counted as a rejection ("not the same person"). An unscored genuine pair is then a
  false reject and an unscored impostor pair a true reject, which is what a deployed system that cannot
  find a face would answer.

The failure-to-enrol count is the number of distinct images that failed, each listed with its error code.

Example:
    >>> report = build_evaluation_report(
    ...     [0.9, 0.8, None, 0.1, 0.2, 0.3], [True, True, True, False, False, False],
    ...     model_id="m", contract_id="m:1", dataset="toy", threshold=0.5, fold_count=2,
    ...     failed_images=[FailedImage("c.jpg", "no_face")])
    >>> report.at_threshold_scored.accuracy, report.at_threshold_all_pairs.accuracy
    (1.0, 0.8333333333333334)
    >>> write_report(report, "out")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from faceprint.errors import UsageError
from faceprint.evaluate.metrics import (
    DEFAULT_FOLD_COUNT,
    DEFAULT_TARGET_FARS,
    AccuracyThreshold,
    BoolArray,
    CalibrationQuality,
    EqualErrorRate,
    FloatArray,
    KFoldAccuracy,
    RocCurve,
    TarAtFar,
    ThresholdMetrics,
    as_labels,
    best_accuracy_threshold,
    calibration_quality,
    equal_error_rate,
    kfold_accuracy,
    metrics_from_decisions,
    roc_curve,
    tar_at_fars,
)
from faceprint.evaluate.plots import plot_det, plot_reliability, plot_roc, plot_similarity_histograms
from faceprint.evaluate.quality_bins import QualityBinReport, quality_bin_reports
from faceprint.evaluate.quality_calibration import pair_logits
from faceprint.io.atomic import write_atomic
from faceprint.models.spec import Calibration
from faceprint.types import FaceQuality

REPORT_FORMAT = "faceprint-evaluation/1"
UNSCORED_PAIRS_POLICY = (
    "ranking metrics, k-fold accuracy and calibration quality use scored pairs only; "
    "at_threshold_all_pairs counts every unscored pair as a rejection (not the same person)"
)

ThresholdSource = Literal["given", "best_accuracy_on_these_pairs"]


@dataclass(frozen=True, slots=True)
class FailedImage:
    """An image that could not be turned into a faceprint, with the error code of the failure."""

    path: str
    error_code: str
    message: str = ""


@dataclass(frozen=True, slots=True, eq=False)
class EvaluationReport:
    """Everything measured on one set of labelled pairs, with what is needed to reproduce it.

    ``min_similarity`` is the operating threshold; ``threshold_source`` says whether it was given (e.g.
    from a ``calib.json`` fitted on other pairs) or chosen on these pairs, which makes
    ``at_threshold_*`` accuracies optimistic. ``roc``, ``scored_similarities`` and ``scored_labels`` feed
    the plots and are left out of :meth:`to_dict`.
    """

    dataset: str
    model_id: str
    contract_id: str
    package_version: str
    created_at: str
    pair_count: int
    genuine_count: int
    impostor_count: int
    unscored_genuine_count: int
    unscored_impostor_count: int
    failed_images: tuple[FailedImage, ...]
    image_count: int | None
    min_similarity: float
    threshold_source: ThresholdSource
    area_under_roc: float
    equal_error: EqualErrorRate
    tar_at_far: tuple[TarAtFar, ...]
    best_accuracy: AccuracyThreshold
    at_threshold_scored: ThresholdMetrics
    at_threshold_all_pairs: ThresholdMetrics
    kfold: KFoldAccuracy
    calibration: Calibration | None
    calibration_quality: CalibrationQuality | None
    roc: RocCurve
    scored_similarities: FloatArray
    scored_labels: BoolArray
    at_50_percent: ThresholdMetrics | None = None
    """Decisions ``P(same) >= 0.5`` on the scored pairs (with a calibration)."""
    quality_bins: tuple[QualityBinReport, ...] = ()
    """Calibration and accuracy per pose and size bin (with a calibration)."""
    scored_probabilities: FloatArray | None = None

    @property
    def unscored_pair_count(self) -> int:
        return self.unscored_genuine_count + self.unscored_impostor_count

    @property
    def scored_pair_count(self) -> int:
        return self.pair_count - self.unscored_pair_count

    @property
    def failure_to_enrol_count(self) -> int:
        return len(self.failed_images)

    @property
    def failure_to_enrol_rate(self) -> float | None:
        """Failed images over all distinct images, when the image count is known."""
        if self.image_count is None or self.image_count == 0:
            return None
        return self.failure_to_enrol_count / self.image_count

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: plain dicts, lists, numbers and strings (no NaN or infinity)."""

        def plain(value: Any) -> Any:
            return dataclasses.asdict(value) if value is not None else None

        return {
            "format": REPORT_FORMAT,
            "dataset": self.dataset,
            "model_id": self.model_id,
            "contract_id": self.contract_id,
            "package_version": self.package_version,
            "created_at": self.created_at,
            "pairs": {
                "total": self.pair_count,
                "genuine": self.genuine_count,
                "impostor": self.impostor_count,
                "scored": self.scored_pair_count,
                "unscored": self.unscored_pair_count,
                "unscored_genuine": self.unscored_genuine_count,
                "unscored_impostor": self.unscored_impostor_count,
                "unscored_policy": UNSCORED_PAIRS_POLICY,
            },
            "failure_to_enrol": {
                "count": self.failure_to_enrol_count,
                "image_count": self.image_count,
                "rate": self.failure_to_enrol_rate,
                "failed_images": [dataclasses.asdict(image) for image in self.failed_images],
            },
            "threshold": {"min_similarity": self.min_similarity, "source": self.threshold_source},
            "metrics": {
                "area_under_roc": self.area_under_roc,
                "equal_error": plain(self.equal_error),
                "tar_at_far": [plain(result) for result in self.tar_at_far],
                "best_accuracy": plain(self.best_accuracy),
                "at_threshold_scored": plain(self.at_threshold_scored),
                "at_threshold_all_pairs": plain(self.at_threshold_all_pairs),
                "kfold_accuracy": plain(self.kfold),
            },
            "calibration": self.calibration.to_dict() if self.calibration is not None else None,
            "calibration_quality": plain(self.calibration_quality),
            "at_50_percent": plain(self.at_50_percent),
            "quality_bins": [{**b.to_dict(), "reliability": plain(b.calibration_quality)} for b in self.quality_bins],
        }


def _fold_array(folds: Sequence[int | None] | None, pair_count: int) -> list[int] | None:
    if folds is None:
        return None
    if len(folds) != pair_count:
        raise UsageError(f"{len(folds)} folds for {pair_count} pairs")
    given = [fold for fold in folds if fold is not None]
    if not given:
        return None  # e.g. LFW View 1 pairs: no folds defined, assign them
    if len(given) != pair_count:
        raise UsageError("folds must be given for every pair or for none")
    return given


def build_evaluation_report(
    similarities: Sequence[float | None],
    labels: Sequence[bool],
    *,
    model_id: str,
    contract_id: str,
    dataset: str,
    folds: Sequence[int | None] | None = None,
    calibration: Calibration | None = None,
    threshold: float | None = None,
    failed_images: Sequence[FailedImage] = (),
    image_count: int | None = None,
    target_fars: Sequence[float] = DEFAULT_TARGET_FARS,
    fold_count: int = DEFAULT_FOLD_COUNT,
    package_version: str | None = None,
    created_at: dt.datetime | None = None,
    qualities_a: Sequence[FaceQuality | None] | None = None,
    qualities_b: Sequence[FaceQuality | None] | None = None,
) -> EvaluationReport:
    """Compute every metric of an evaluation.

    Args:
        similarities: One per pair, ``None`` where the pair could not be scored.
        labels: ``True`` for genuine pairs.
        model_id: The embedding model evaluated.
        contract_id: Its embedding contract.
        dataset: A name for the pair list (e.g. ``"lfw-view1/pairsDevTest"``).
        folds: Fold per pair (LFW View 2); ``None``, or all ``None``, assigns ``fold_count`` folds.
        calibration: When given, probabilities are scored (ECE, Brier, reliability bins).
        threshold: The operating minimum similarity; ``None`` picks the most accurate one on these pairs.
        failed_images: Images that failed; repeated paths count once (first entry kept).
        image_count: Distinct images in the pair list, for the failure-to-enrol rate.
        target_fars: FARs for TAR@FAR.
        fold_count: Folds to assign when ``folds`` gives none.
        package_version: Recorded in the report; ``None`` is this package's version.
        created_at: Recorded in the report; ``None`` is now (UTC).
        qualities_a: The first face's quality per pair (``None`` where not measured or unscored). With a
            quality-aware calibration, probabilities and the per-pair thresholds use them; with any
            calibration they sort the pairs into quality bins.
        qualities_b: The second face's quality per pair.

    Raises:
        UsageError: Mismatched lengths, or scored pairs without both genuine and impostor pairs.

    Example:
        >>> build_evaluation_report([0.9, 0.1], [True, False], model_id="m", contract_id="m:1",
        ...                         dataset="toy", fold_count=2).pair_count  # doctest: +SKIP
        2
    """
    truth = as_labels(labels)
    if len(similarities) != truth.shape[0]:
        raise UsageError(f"{len(similarities)} similarities for {truth.shape[0]} labels")
    scored = np.array([value is not None for value in similarities], dtype=np.bool_)
    scores = np.array([value for value in similarities if value is not None], dtype=np.float64)
    scored_truth = truth[scored]
    fold_list = _fold_array(folds, truth.shape[0])
    scored_folds = None if fold_list is None else np.asarray(fold_list, dtype=np.int64)[scored]

    roc = roc_curve(scores, scored_truth)
    best = best_accuracy_threshold(scores, scored_truth)
    source: ThresholdSource = "given" if threshold is not None else "best_accuracy_on_these_pairs"
    min_similarity = threshold if threshold is not None else best.min_similarity
    scored_index = np.flatnonzero(scored)
    if (qualities_a is None) != (qualities_b is None):
        raise UsageError("give the qualities of both faces of each pair, or of neither")
    if qualities_a is not None and qualities_b is not None:
        if not (len(qualities_a) == len(qualities_b) == truth.shape[0]):
            raise UsageError(f"{len(qualities_a)} and {len(qualities_b)} qualities for {truth.shape[0]} pairs")
        scored_a: list[FaceQuality | None] = [qualities_a[i] for i in scored_index.tolist()]
        scored_b: list[FaceQuality | None] = [qualities_b[i] for i in scored_index.tolist()]
    else:
        scored_a = scored_b = [None] * scored_index.shape[0]
    if calibration is not None and calibration.quality is not None:
        # The comparator's rule: the reference pair's threshold stands for a logit level every pair must reach.
        level = calibration.slope * min_similarity + calibration.intercept
        accepted_scored = pair_logits(calibration, scores, scored_a, scored_b) >= level
    else:
        accepted_scored = scores >= min_similarity
    accepted_all = np.zeros(truth.shape[0], dtype=np.bool_)
    accepted_all[scored] = accepted_scored

    quality = None
    at_50 = None
    bins: tuple[QualityBinReport, ...] = ()
    probabilities = None
    if calibration is not None:
        probabilities = np.exp(-np.logaddexp(0.0, -pair_logits(calibration, scores, scored_a, scored_b)))
        quality = calibration_quality(probabilities, scored_truth)
        at_50 = metrics_from_decisions(
            probabilities >= 0.5, scored_truth, min_similarity=-calibration.intercept / calibration.slope
        )
        if any(a is not None and b is not None for a, b in zip(scored_a, scored_b, strict=True)):
            bins = quality_bin_reports(probabilities, scored_truth, scores, scored_a, scored_b)

    seen_paths: set[str] = set()
    unique_failures: list[FailedImage] = []
    for image in failed_images:
        if image.path not in seen_paths:
            seen_paths.add(image.path)
            unique_failures.append(image)
    if package_version is None:
        # Imported here: faceprint/__init__ may one day re-export this module, and a top-level import
        # of the package from inside it would then be circular.
        from faceprint import __version__

        package_version = __version__
    moment = created_at if created_at is not None else dt.datetime.now(dt.UTC)
    return EvaluationReport(
        dataset=dataset,
        model_id=model_id,
        contract_id=contract_id,
        package_version=package_version,
        created_at=moment.isoformat(timespec="seconds"),
        pair_count=int(truth.shape[0]),
        genuine_count=int(truth.sum()),
        impostor_count=int((~truth).sum()),
        unscored_genuine_count=int((~scored & truth).sum()),
        unscored_impostor_count=int((~scored & ~truth).sum()),
        failed_images=tuple(unique_failures),
        image_count=image_count,
        min_similarity=float(min_similarity),
        threshold_source=source,
        area_under_roc=roc.area_under_curve,
        equal_error=equal_error_rate(scores, scored_truth),
        tar_at_far=tar_at_fars(scores, scored_truth, target_fars=target_fars),
        best_accuracy=best,
        at_threshold_scored=metrics_from_decisions(accepted_scored, scored_truth, min_similarity=min_similarity),
        at_threshold_all_pairs=metrics_from_decisions(accepted_all, truth, min_similarity=min_similarity),
        kfold=kfold_accuracy(scores, scored_truth, folds=scored_folds, fold_count=fold_count),
        calibration=calibration,
        calibration_quality=quality,
        roc=roc,
        scored_similarities=scores,
        scored_labels=scored_truth,
        at_50_percent=at_50,
        quality_bins=bins,
        scored_probabilities=probabilities,
    )


# --- writing -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """The files :func:`write_report` wrote."""

    json_path: Path
    markdown_path: Path
    plot_paths: tuple[Path, ...]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.2f} %"


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_markdown(report: EvaluationReport, *, plot_names: Sequence[str] = ()) -> str:
    """The report as Markdown tables.

    Example:
        >>> render_markdown(report).startswith("# Evaluation")  # doctest: +SKIP
        True
    """
    kfold = report.kfold
    lines = [
        f"# Evaluation: {report.dataset}",
        "",
        "| | |",
        "|---|---|",
        f"| model | `{report.model_id}` |",
        f"| contract | `{report.contract_id}` |",
        f"| package version | {report.package_version} |",
        f"| created (UTC) | {report.created_at} |",
        f"| threshold (min similarity) | {report.min_similarity:.4f} ({report.threshold_source.replace('_', ' ')}) |",
        "",
        "## Pairs",
        "",
        "| | all | genuine | impostor |",
        "|---|---:|---:|---:|",
        f"| total | {report.pair_count} | {report.genuine_count} | {report.impostor_count} |",
        f"| scored | {report.scored_pair_count} | {report.genuine_count - report.unscored_genuine_count} "
        f"| {report.impostor_count - report.unscored_impostor_count} |",
        f"| unscored | {report.unscored_pair_count} | {report.unscored_genuine_count} "
        f"| {report.unscored_impostor_count} |",
        "",
        f"Unscored pairs: {UNSCORED_PAIRS_POLICY}.",
        "",
        "## Metrics",
        "",
        "| metric | value |",
        "|---|---:|",
        f"| AUC | {report.area_under_roc:.4f} |",
        f"| EER | {_percent(report.equal_error.equal_error_rate)} "
        f"(at similarity {report.equal_error.min_similarity:.4f}) |",
        f"| best accuracy on these pairs | {_percent(report.best_accuracy.accuracy)} "
        f"(at similarity {report.best_accuracy.min_similarity:.4f}) |",
        f"| {kfold.fold_count}-fold accuracy ({kfold.folds_source} folds) | {_percent(kfold.mean_accuracy)} "
        f"± {_percent(kfold.std_accuracy)} (std; standard error {_percent(kfold.standard_error)}) |",
        "",
        "## At the threshold",
        "",
        "| | accuracy | precision | recall (TAR) | specificity | F1 | TA | FA | TR | FR |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, metrics in (("scored pairs", report.at_threshold_scored), ("all pairs", report.at_threshold_all_pairs)):
        lines.append(
            f"| {name} | {_percent(metrics.accuracy)} | {_percent(metrics.precision)} | {_percent(metrics.recall)} "
            f"| {_percent(metrics.specificity)} | {_number(metrics.f1)} | {metrics.true_accept_count} "
            f"| {metrics.false_accept_count} | {metrics.true_reject_count} | {metrics.false_reject_count} |"
        )
    lines += [
        "",
        "## TAR at FAR",
        "",
        "| target FAR | TAR | achieved FAR | min similarity | impostor pairs | note |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for result in report.tar_at_far:
        lines.append(
            f"| {result.target_false_accept_rate:g} | {_percent(result.true_accept_rate)} "
            f"| {_number(result.achieved_false_accept_rate, 5)} | {_number(result.min_similarity)} "
            f"| {result.impostor_count} | {result.note or ''} |"
        )
    if report.calibration is not None and report.calibration_quality is not None:
        quality = report.calibration_quality
        calibration = report.calibration
        sigmoid = f"1 / (1 + exp(-({calibration.slope:.4f} * s + {calibration.intercept:.4f})))"
        if calibration.quality is None:
            formula = f"P(same) = {sigmoid}"
        else:
            terms = ", ".join(
                f"`{t.feature}` clamped to [{t.low:.3g}, {t.high:.3g}] "
                f"(slope {t.slope:+.4g}, intercept {t.intercept:+.4g})"
                for t in calibration.quality.terms
            )
            formula = f"P(same) = {sigmoid} for the reference pair, moved by face quality: {terms}"
        lines += [
            "",
            "## Calibration",
            "",
            f"{formula}, fitted on {calibration.provenance.get('dataset', 'unknown data')}.",
            "",
            "| metric | value |",
            "|---|---:|",
            f"| ECE ({len(quality.bins)} bins) | {quality.expected_calibration_error:.4f} |",
            f"| Brier score | {quality.brier_score:.4f} |",
        ]
        if report.at_50_percent is not None:
            lines.append(f"| accuracy at the 50% cut | {_percent(report.at_50_percent.accuracy)} |")
        if report.quality_bins:
            lines += [
                "",
                "### Per face-quality bin",
                "",
                "| bin | pairs | genuine | ECE | Brier | accuracy at 50% | best accuracy |",
                "|---|---:|---:|---:|---:|---:|---:|",
            ]
            for b in report.quality_bins:
                q = b.calibration_quality
                lines.append(
                    f"| {b.group}: {b.label} | {b.pair_count} | {b.genuine_count} "
                    f"| {_number(None if q is None else q.expected_calibration_error)} "
                    f"| {_number(None if q is None else q.brier_score)} | {_percent(b.accuracy_at_50)} "
                    f"| {_percent(b.best_accuracy)} |"
                )
    lines += ["", "## Failure to enrol", ""]
    rate = "" if report.failure_to_enrol_rate is None else f" ({_percent(report.failure_to_enrol_rate)} of images)"
    lines.append(f"{report.failure_to_enrol_count} image(s) failed{rate}.")
    if report.failed_images:
        lines += ["", "| image | error code | message |", "|---|---|---|"]
        lines += [
            f"| `{image.path}` | `{image.error_code}` | {image.message.replace('|', '/')} |"
            for image in report.failed_images
        ]
    if plot_names:
        lines += ["", "## Plots", ""] + [f"![{Path(name).stem}]({name})" for name in plot_names]
    return "\n".join(lines) + "\n"


def write_report(report: EvaluationReport, out_dir: str | os.PathLike[str]) -> ReportFiles:
    """Write ``report.json``, ``report.md`` and the plots into ``out_dir`` (created if missing).

    Plots: ``roc.png``, ``det.png``, ``similarity_histogram.png``, and with a calibration ``reliability.png``
    plus ``reliability_<bin>.png`` for each non-empty quality bin (``pose_frontal``, ``size_small``, ...).
    Every file is written atomically.

    Example:
        >>> write_report(report, "eval-out").json_path.name  # doctest: +SKIP
        'report.json'
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    plot_paths = [
        plot_roc(report.roc, folder / "roc.png", title=f"ROC: {report.dataset}"),
        plot_det(report.roc, folder / "det.png", title=f"DET: {report.dataset}"),
        plot_similarity_histograms(
            report.scored_similarities,
            report.scored_labels,
            folder / "similarity_histogram.png",
            min_similarity=report.min_similarity,
            title=f"Similarities: {report.dataset}",
        ),
    ]
    if report.calibration_quality is not None:
        plot_paths.append(plot_reliability(report.calibration_quality, folder / "reliability.png", title="Reliability"))
    for quality_bin in report.quality_bins:
        if quality_bin.calibration_quality is not None:
            plot_paths.append(
                plot_reliability(
                    quality_bin.calibration_quality,
                    folder / f"reliability_{quality_bin.key}.png",
                    title=f"Reliability, {quality_bin.label}",
                )
            )
    plot_names = [path.name for path in plot_paths]
    data = {**report.to_dict(), "plots": plot_names}
    json_path = write_atomic(
        folder / "report.json", (json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()
    )
    markdown_path = write_atomic(folder / "report.md", render_markdown(report, plot_names=plot_names).encode("utf-8"))
    return ReportFiles(json_path=json_path, markdown_path=markdown_path, plot_paths=tuple(plot_paths))
