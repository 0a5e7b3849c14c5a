"""Fit and store the map from cosine similarity to P(same person).

Why Platt scaling (``p = 1 / (1 + exp(-(slope * s + intercept)))``) and not isotonic regression:

- it is monotone by construction (for a positive slope), so a higher similarity never means a lower
  probability;
- it is smooth, with 2 parameters: fitted on the 2,200 LFW View 1 training pairs it cannot overfit, while
  isotonic regression fits a step function with up to one step per distinct score, whose steps follow the
  noise of a few thousand pairs and give many pairs exactly the same probability;
- it extrapolates: similarities beyond the fitted range still get sensible, saturating probabilities,
  where an isotonic map is flat outside its data.

The fit is maximum likelihood by Newton's method (2x2 IRLS) with a backtracking line search, after Lin,
Lin & Weng, "A note on Platt's probabilistic outputs for support vector machines" (2007). Platt's target
smoothing (genuine target ``(N+ + 1) / (N+ + 2)``, impostor target ``1 / (N- + 2)``) is on by default: it
is a prior that keeps the slope finite when genuine and impostor scores do not overlap, and it changes the
fit negligibly on thousands of pairs.

A ``calib.json`` holds the :class:`~faceprint.models.spec.Calibration` dict plus the ``contract_id`` it
was fitted for, the operating ``threshold`` (a minimum similarity) and the ``far_thresholds``. The
calibration dict is written twice: its keys at the top level (format 1 as first written) and as a nested
``"calibration"`` object, the form :func:`faceprint.pipeline.load_pipeline` (``PipelineConfig
(calibration_path=...)``) reads. Reading checks that both copies agree.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> scores = np.r_[rng.normal(0.7, 0.1, 500), rng.normal(0.2, 0.1, 500)]
    >>> labels = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    >>> calibration = fit_platt(scores, labels, dataset="synthetic")
    >>> probabilities = apply_calibration(calibration, [0.2, 0.45, 0.7])
    >>> bool(probabilities[0] < 0.5 < probabilities[2])
    True
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from faceprint.compare import PAIR_FEATURES
from faceprint.errors import ContractMismatchError, InputError, MissingFileError, UsageError
from faceprint.evaluate.metrics import (
    DEFAULT_TARGET_FARS,
    FloatArray,
    as_labels,
    as_scores,
    best_accuracy_threshold,
    tar_at_fars,
)
from faceprint.io.atomic import write_atomic
from faceprint.models.spec import Calibration

CALIBRATION_FILE_FORMAT = "faceprint-calibration/1"
PLATT_METHOD = "platt-newton"
"""``provenance["method"]``: Platt's sigmoid fitted by Newton's method."""

_MAX_ITERATIONS = 100
_GRADIENT_TOLERANCE = 1e-10
_MIN_STEP = 1e-10
_HESSIAN_RIDGE = 1e-12  # keeps the 2x2 Hessian invertible when the data barely constrain the slope


class CalibrationFormatError(InputError):
    """A ``calib.json`` that cannot be read."""

    code: ClassVar[str] = "calibration_format"


class CalibrationFitError(UsageError):
    """The sigmoid cannot be fitted (e.g. separable data without target smoothing)."""

    code: ClassVar[str] = "calibration_fit"


def sigmoid(values: npt.ArrayLike) -> FloatArray:
    """``1 / (1 + exp(-x))`` without overflow for large ``|x|``.

    Example:
        >>> sigmoid([-1000.0, 0.0, 1000.0]).tolist()
        [0.0, 0.5, 1.0]
    """
    x = np.asarray(values, dtype=np.float64)
    return np.asarray(np.exp(-np.logaddexp(0.0, -x)), dtype=np.float64)


def apply_calibration(calibration: Calibration, similarities: npt.ArrayLike) -> FloatArray:
    """P(same person) for each similarity, by the calibration's sigmoid.

    Args:
        calibration: A fitted :class:`~faceprint.models.spec.Calibration`.
        similarities: Cosine similarities (any shape).

    Returns:
        Probabilities in [0, 1], same shape as ``similarities``.

    Example:
        >>> apply_calibration(Calibration(slope=10.0, intercept=-5.0), [0.5]).tolist()
        [0.5]
    """
    scores = np.asarray(similarities, dtype=np.float64)
    return sigmoid(calibration.slope * scores + calibration.intercept)


@dataclass(frozen=True, slots=True)
class _PlattFit:
    slope: float
    intercept: float
    iterations: int
    mean_log_loss: float


def _objective(slope: float, intercept: float, scores: FloatArray, targets: FloatArray) -> float:
    z = slope * scores + intercept
    # Cross-entropy against (soft) targets, written with logaddexp so large |z| cannot overflow.
    return float(np.sum(np.logaddexp(0.0, z) - targets * z))


def _newton_platt(scores: FloatArray, targets: FloatArray, initial_intercept: float) -> _PlattFit:
    slope, intercept = 0.0, initial_intercept
    value = _objective(slope, intercept, scores, targets)
    for iteration in range(1, _MAX_ITERATIONS + 1):
        p = sigmoid(slope * scores + intercept)
        residual = p - targets
        gradient = np.array([np.dot(residual, scores), residual.sum()])
        if np.max(np.abs(gradient)) < _GRADIENT_TOLERANCE * scores.shape[0]:
            return _PlattFit(float(slope), float(intercept), iteration - 1, value / scores.shape[0])
        weight = p * (1.0 - p)
        hessian = np.array(
            [
                [np.dot(weight, scores * scores) + _HESSIAN_RIDGE, np.dot(weight, scores)],
                [np.dot(weight, scores), weight.sum() + _HESSIAN_RIDGE],
            ]
        )
        direction = -np.linalg.solve(hessian, gradient)
        decrease = float(np.dot(gradient, direction))  # negative: Newton steps go downhill
        step = 1.0
        while step >= _MIN_STEP:
            new_slope, new_intercept = slope + step * direction[0], intercept + step * direction[1]
            new_value = _objective(new_slope, new_intercept, scores, targets)
            if new_value <= value + 1e-4 * step * decrease:
                break
            step /= 2.0
        else:
            # No step improves the fit: we are at the optimum up to floating-point noise.
            return _PlattFit(float(slope), float(intercept), iteration, value / scores.shape[0])
        slope, intercept, value = float(new_slope), float(new_intercept), new_value
    raise CalibrationFitError(
        f"the sigmoid fit did not converge in {_MAX_ITERATIONS} Newton steps (slope {slope:.3g}); "
        "genuine and impostor similarities are probably separable: fit with target_smoothing=True",
        details={"slope": slope, "intercept": intercept},
    )


def fit_platt(
    similarities: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    dataset: str,
    target_smoothing: bool = True,
    fitted_on: dt.date | None = None,
) -> Calibration:
    """Fit ``P(same) = sigmoid(slope * similarity + intercept)`` by maximum likelihood.

    Args:
        similarities: Cosine similarity per pair.
        labels: ``True`` for genuine pairs.
        dataset: Where the pairs come from, recorded in the provenance (e.g. ``"lfw-view1/pairsDevTrain"``).
        target_smoothing: Platt's soft targets (default); turn off for the plain logistic-regression MLE.
        fitted_on: The date recorded in the provenance; ``None`` is today (UTC).

    Returns:
        A :class:`~faceprint.models.spec.Calibration` whose ``provenance`` holds ``dataset``,
        ``genuine_pairs``, ``impostor_pairs``, ``fitted_on`` (ISO date), ``method``,
        ``target_smoothing``, ``newton_iterations``, ``mean_log_loss`` and the fitted similarity range.

    Raises:
        UsageError: Bad inputs or only one class of pair.
        CalibrationFitError: No finite fit (separable data with ``target_smoothing=False``), or a fit
            whose slope is not positive (probability would fall as similarity rises).

    Example:
        >>> fit_platt([0.1, 0.3, 0.5, 0.7], [False, True, False, True], dataset="toy").slope > 0
        True
    """
    scores = as_scores(similarities)
    truth = as_labels(labels, length=scores.shape[0])
    genuine_count = int(truth.sum())
    impostor_count = int(truth.shape[0] - genuine_count)
    if genuine_count == 0 or impostor_count == 0:
        raise UsageError(f"calibration needs both classes: {genuine_count} genuine, {impostor_count} impostor")
    if target_smoothing:
        high, low = (genuine_count + 1.0) / (genuine_count + 2.0), 1.0 / (impostor_count + 2.0)
        targets = np.where(truth, high, low)
    else:
        if scores[~truth].max() < scores[truth].min():
            # The likelihood then has no maximum: the slope would grow until the arithmetic gives out.
            raise CalibrationFitError(
                "genuine and impostor similarities do not overlap, so the unsmoothed fit has no finite "
                "slope: fit with target_smoothing=True"
            )
        targets = truth.astype(np.float64)
    fit = _newton_platt(scores, targets, math.log((genuine_count + 1.0) / (impostor_count + 1.0)))
    if not fit.slope > 0.0:
        raise CalibrationFitError(
            f"fitted slope {fit.slope:.4g} is not positive: these similarities do not rank genuine pairs higher",
            details={"slope": fit.slope, "intercept": fit.intercept},
        )
    date = fitted_on if fitted_on is not None else dt.datetime.now(dt.UTC).date()
    return Calibration(
        slope=fit.slope,
        intercept=fit.intercept,
        provenance={
            "dataset": dataset,
            "genuine_pairs": genuine_count,
            "impostor_pairs": impostor_count,
            "fitted_on": date.isoformat(),
            "method": PLATT_METHOD,
            "target_smoothing": target_smoothing,
            "newton_iterations": fit.iterations,
            "mean_log_loss": fit.mean_log_loss,
            "similarity_range": [float(scores.min()), float(scores.max())],
        },
    )


def check_monotone(calibration: Calibration) -> float:
    """The smallest similarity coefficient over the clamped feature box (positive: monotone).

    Raises:
        CalibrationFitError: It is not positive, so the probability would fall as similarity rises
            for some qualities.

    Example:
        >>> check_monotone(Calibration(slope=3.0, intercept=-1.0))
        3.0
    """
    model = calibration.quality
    if model is None or not model.terms:
        smallest = calibration.slope
    else:
        corners = itertools.product(*((term.low, term.high) for term in model.terms))
        smallest = min(
            calibration.slope
            + sum(term.slope * (x - term.reference) for term, x in zip(model.terms, corner, strict=True))
            for corner in corners
        )
    if not smallest > 0.0:
        raise CalibrationFitError(
            f"the fitted similarity coefficient falls to {smallest:.4g} for some face qualities: the probability "
            "would not rise with similarity there; fit on more pairs or with fewer quality terms",
            details={"min_slope": smallest},
        )
    return float(smallest)


# --- calib.json --------------------------------------------------------------------------------------


def far_key(target_far: float) -> str:
    """The key of a FAR in ``far_thresholds``, as :class:`~faceprint.models.spec.ModelSpec` uses it.

    Example:
        >>> far_key(1e-3), far_key(0.1), far_key(5e-4)
        ('1e-3', '1e-1', '5e-4')
    """
    mantissa, exponent = f"{target_far:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


@dataclass(frozen=True, slots=True)
class CalibrationRecord:
    """What a ``calib.json`` holds: a calibration and the operating points fitted with it.

    ``threshold`` is a minimum similarity (the default operating point); ``far_thresholds`` maps
    :func:`far_key` keys to the minimum similarity for that false-accept rate.
    """

    calibration: Calibration
    contract_id: str
    threshold: float
    far_thresholds: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CALIBRATION_FILE_FORMAT,
            **self.calibration.to_dict(),
            # Nested too: the pipeline's calibration loader reads data["calibration"].
            "calibration": self.calibration.to_dict(),
            "contract_id": self.contract_id,
            "threshold": self.threshold,
            "far_thresholds": dict(self.far_thresholds),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibrationRecord:
        """Read the dict form back.

        Raises:
            CalibrationFormatError: Wrong format tag, missing keys or wrong types.
        """
        if data.get("format") != CALIBRATION_FILE_FORMAT:
            raise CalibrationFormatError(f"not a {CALIBRATION_FILE_FORMAT} file: format={data.get('format')!r}")
        try:
            calibration = Calibration.from_dict(dict(data))
            nested = data.get("calibration")
            if nested is not None and Calibration.from_dict(dict(nested)) != calibration:
                raise CalibrationFormatError(
                    "the top-level calibration and the nested 'calibration' object disagree; "
                    "fit again with `faceprint calibrate` rather than editing one copy"
                )
            far_thresholds = {str(key): float(value) for key, value in dict(data.get("far_thresholds", {})).items()}
            record = cls(
                calibration=calibration,
                contract_id=str(data["contract_id"]),
                threshold=float(data["threshold"]),
                far_thresholds=far_thresholds,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CalibrationFormatError(f"malformed calibration file: {err!r}") from err
        numbers = [calibration.slope, calibration.intercept, record.threshold, *far_thresholds.values()]
        if calibration.quality is not None:
            numbers += [
                value
                for term in calibration.quality.terms
                for value in (term.reference, term.low, term.high, term.slope, term.intercept)
            ]
            numbers += [value for bounds in calibration.quality.face_ranges.values() for value in bounds]
            numbers += [*calibration.quality.far_location, *calibration.quality.far_scale]
            numbers += list(calibration.quality.far_quantiles.values())
        if not all(math.isfinite(number) for number in numbers):
            raise CalibrationFormatError("calibration numbers must be finite")
        if calibration.quality is not None:
            unknown = [t.feature for t in calibration.quality.terms if t.feature not in PAIR_FEATURES]
            if unknown:
                raise CalibrationFormatError(
                    f"unknown pair feature {unknown[0]!r} in the calibration (known: {', '.join(PAIR_FEATURES)})"
                )
            try:
                check_monotone(calibration)
            except CalibrationFitError as err:
                raise CalibrationFormatError(f"calibration file refused: {err.message}") from err
        return record


def make_calibration_record(
    similarities: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    contract_id: str,
    dataset: str,
    target_fars: Sequence[float] = DEFAULT_TARGET_FARS,
    target_smoothing: bool = True,
    fitted_on: dt.date | None = None,
) -> CalibrationRecord:
    """Fit everything a ``calib.json`` holds from one set of scored pairs.

    ``threshold`` is the accuracy-maximising minimum similarity; ``far_thresholds`` holds only the target
    FARs these data can resolve (see :func:`faceprint.evaluate.metrics.tar_at_far`), so a key that is
    missing means "not measured", never a guess.

    Example:
        >>> record = make_calibration_record(
        ...     [0.9, 0.8, 0.3, 0.4, 0.35, 0.6], [True, True, False, False, False, True],
        ...     contract_id="m:1", dataset="toy", target_fars=(0.5,))
        >>> sorted(record.far_thresholds), record.threshold
        (['5e-1'], 0.5)
    """
    scores = as_scores(similarities)
    truth = as_labels(labels, length=scores.shape[0])
    calibration = fit_platt(scores, truth, dataset=dataset, target_smoothing=target_smoothing, fitted_on=fitted_on)
    far_thresholds = {
        far_key(result.target_false_accept_rate): result.min_similarity
        for result in tar_at_fars(scores, truth, target_fars=target_fars)
        if result.min_similarity is not None
    }
    return CalibrationRecord(
        calibration=calibration,
        contract_id=contract_id,
        threshold=best_accuracy_threshold(scores, truth).min_similarity,
        far_thresholds=far_thresholds,
    )


def save_calibration(record: CalibrationRecord, path: str | os.PathLike[str]) -> Path:
    """Write ``record`` as JSON to ``path`` atomically (temp file + ``os.replace``).

    Example:
        >>> save_calibration(record, "calib.json")  # doctest: +SKIP
    """
    text = json.dumps(record.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"
    return write_atomic(path, text.encode("utf-8"))


def load_calibration(path: str | os.PathLike[str], *, expected_contract_id: str | None = None) -> CalibrationRecord:
    """Read a ``calib.json``.

    Args:
        path: The file.
        expected_contract_id: When given, the file must have been fitted for this embedding contract.

    Raises:
        MissingFileError: There is no such file.
        CalibrationFormatError: Unreadable, not JSON, or not a calibration file.
        ContractMismatchError: Fitted for another contract than ``expected_contract_id``.

    Example:
        >>> load_calibration("calib.json", expected_contract_id=spec.contract_id)  # doctest: +SKIP
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise MissingFileError(f"calibration file {path} does not exist", details={"name": str(path)}) from err
    except OSError as err:
        raise CalibrationFormatError(f"{path}: cannot read the calibration file: {err.strerror or err}") from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CalibrationFormatError(f"{path}: not a JSON calibration file: {err}") from err
    if not isinstance(data, dict):
        raise CalibrationFormatError(f"{path}: a calibration file must hold a JSON object")
    record = CalibrationRecord.from_dict(data)
    if expected_contract_id is not None and record.contract_id != expected_contract_id:
        raise ContractMismatchError(
            f"{path} was fitted for contract {record.contract_id!r}, not {expected_contract_id!r}",
            details={"file": record.contract_id, "expected": expected_contract_id},
        )
    return record
