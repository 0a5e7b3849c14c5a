"""Calibration and accuracy per face-quality bin: pose (head turn) and size (inter-ocular distance).

A probability can be calibrated overall and wrong for the hard pairs (frontal-vs-profile, small faces):
the overall ECE averages them away. Each scored pair falls in one pose bin, by the larger head turn of its
two faces, and one size bin, by the smaller face; pairs whose faces carry no quality are counted in a bin
of their own. For each bin: ECE and Brier score (with the reliability bins behind its plot), accuracy at
the 50% cut and, where the bin has both kinds of pair, the best accuracy any threshold gives on it.

Example:
    >>> from faceprint.types import FaceQuality
    >>> q = FaceQuality(50.0, 1.0, "hog@0", 5.0, 0.0, 300.0, 0.5, 0.0)
    >>> bins = quality_bin_reports([0.9, 0.1], [True, False], [0.95, 0.8], [q, q], [q, q])
    >>> [(b.key, b.pair_count) for b in bins if b.pair_count]
    [('pose_frontal', 2), ('size_medium', 2)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from faceprint.errors import UsageError
from faceprint.evaluate.metrics import (
    CalibrationQuality,
    as_labels,
    as_probabilities,
    as_scores,
    best_accuracy_threshold,
    calibration_quality,
)
from faceprint.types import FaceQuality


@dataclass(frozen=True, slots=True)
class QualityBinSpec:
    """One bin: pairs whose ``group`` measure lies in ``[low, high)``."""

    group: str
    key: str
    label: str
    low: float
    high: float


POSE_BINS = (
    QualityBinSpec("pose", "pose_frontal", "max |yaw| < 20°", 0.0, 20.0),
    QualityBinSpec("pose", "pose_turned", "20° ≤ max |yaw| < 45°", 20.0, 45.0),
    QualityBinSpec("pose", "pose_profile", "max |yaw| ≥ 45°", 45.0, math.inf),
)
SIZE_BINS = (
    QualityBinSpec("size", "size_small", "min inter-ocular < 30 px", 0.0, 30.0),
    QualityBinSpec("size", "size_medium", "30 ≤ min inter-ocular < 60 px", 30.0, 60.0),
    QualityBinSpec("size", "size_large", "min inter-ocular ≥ 60 px", 60.0, math.inf),
)
UNKNOWN_BIN = QualityBinSpec("unknown", "quality_unknown", "face quality not measured", math.nan, math.nan)


@dataclass(frozen=True, slots=True)
class QualityBinReport:
    """What one quality bin's pairs measured. Metrics are ``None`` for an empty bin."""

    group: str
    key: str
    label: str
    pair_count: int
    genuine_count: int
    calibration_quality: CalibrationQuality | None
    accuracy_at_50: float | None
    best_accuracy: float | None

    def to_dict(self) -> dict[str, object]:
        quality = self.calibration_quality
        return {
            "group": self.group,
            "key": self.key,
            "label": self.label,
            "pairs": self.pair_count,
            "genuine": self.genuine_count,
            "ece": None if quality is None else quality.expected_calibration_error,
            "brier": None if quality is None else quality.brier_score,
            "accuracy_at_50": self.accuracy_at_50,
            "best_accuracy": self.best_accuracy,
        }


def _measure(spec: QualityBinSpec, a: FaceQuality, b: FaceQuality) -> float:
    if spec.group == "pose":
        return max(abs(a.yaw_deg), abs(b.yaw_deg))
    return min(a.interocular_px, b.interocular_px)


def _bin_report(
    spec: QualityBinSpec,
    mask: npt.NDArray[np.bool_],
    probs: npt.NDArray[np.float64],
    truth: npt.NDArray[np.bool_],
    scores: npt.NDArray[np.float64],
) -> QualityBinReport:
    count = int(mask.sum())
    if count == 0:
        return QualityBinReport(spec.group, spec.key, spec.label, 0, 0, None, None, None)
    bin_truth = truth[mask]
    both = bool(bin_truth.any() and (~bin_truth).any())
    return QualityBinReport(
        group=spec.group,
        key=spec.key,
        label=spec.label,
        pair_count=count,
        genuine_count=int(bin_truth.sum()),
        calibration_quality=calibration_quality(probs[mask], bin_truth),
        accuracy_at_50=float(np.mean((probs[mask] >= 0.5) == bin_truth)),
        best_accuracy=best_accuracy_threshold(scores[mask], bin_truth).accuracy if both else None,
    )


def quality_bin_reports(
    probabilities: npt.ArrayLike,
    labels: npt.ArrayLike,
    similarities: npt.ArrayLike,
    qualities_a: Sequence[FaceQuality | None],
    qualities_b: Sequence[FaceQuality | None],
) -> tuple[QualityBinReport, ...]:
    """One report per pose bin, per size bin, and for the pairs of unknown quality (scored pairs only).

    Raises:
        UsageError: The sequences differ in length.
    """
    probs = as_probabilities(probabilities)
    truth = as_labels(labels, length=probs.shape[0])
    scores = as_scores(similarities)
    if not (scores.shape[0] == len(qualities_a) == len(qualities_b) == probs.shape[0]):
        raise UsageError("probabilities, labels, similarities and qualities must have one entry per pair")
    known = np.array(
        [a is not None and b is not None for a, b in zip(qualities_a, qualities_b, strict=True)], dtype=np.bool_
    )
    reports = []
    for spec in (*POSE_BINS, *SIZE_BINS):
        values = np.array(
            [
                _measure(spec, a, b) if a is not None and b is not None else math.nan
                for a, b in zip(qualities_a, qualities_b, strict=True)
            ],
            dtype=np.float64,
        )
        mask = known & (values >= spec.low) & (values < spec.high)
        reports.append(_bin_report(spec, mask, probs, truth, scores))
    reports.append(_bin_report(UNKNOWN_BIN, ~known, probs, truth, scores))
    return tuple(reports)
