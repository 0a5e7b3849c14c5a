"""Fit a quality-aware calibration: P(same | similarity, quality of a, quality of b).

The model is a logistic regression on the similarity ``s`` whose slope and intercept are linear in a few
pair features ``x_k`` (:data:`faceprint.compare.PAIR_FEATURES`), each clamped to the central range of the
fitted pairs and centred on a reference pair::

    logit = (a0 + sum_k a_k (x_k - r_k)) * s + (b0 + sum_k b_k (x_k - r_k))

so ``(a0, b0)`` is the sigmoid of the reference pair (two frontal, well-sized faces) and the model is the
plain Platt sigmoid when no term is used. Why this model and not one Platt sigmoid per quality bin is
measured in docs/calibration.md: the same accuracy and calibration with 2 + 2K parameters instead of 2
per bin, no jumps at bin edges, and a monotonicity guarantee that is checked, not hoped for: the slope is
linear in the clamped features, so it is positive everywhere when it is positive at every corner of the
clamped feature box (:func:`check_monotone`).

The fit is maximum likelihood by Newton's method (IRLS) with Platt's target smoothing and a small ridge
on the quality terms (features standardised for it), after the same recipe as
:func:`faceprint.evaluate.calibrate.fit_platt`.

Example:
    >>> import numpy as np
    >>> from faceprint.types import FaceQuality
    >>> rng = np.random.default_rng(0)
    >>> def face(yaw):
    ...     return FaceQuality(60.0, 1.0, "hog@0", float(yaw), 0.0, 300.0, 0.5, 0.0)
    >>> yaws = rng.uniform(0, 60, 2000)
    >>> same = rng.random(2000) < 0.5
    >>> # Turned heads lower genuine similarity: a similarity-only sigmoid cannot know that.
    >>> s = np.where(same, 0.95 - 0.002 * yaws, 0.8) + rng.normal(0, 0.02, 2000)
    >>> calibration = fit_quality_calibration(
    ...     s, same, [face(y) for y in yaws], [face(0) for _ in yaws],
    ...     features=("max_abs_yaw_deg",), dataset="synthetic")
    >>> calibration.method, [t.feature for t in calibration.quality.terms]
    ('quality', ['max_abs_yaw_deg'])
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from faceprint.compare import PAIR_FEATURES, face_measures, sigmoid_for_quality
from faceprint.errors import UsageError
from faceprint.evaluate.calibrate import (
    CalibrationFitError,
    CalibrationRecord,
    check_monotone,
    far_key,
    fit_platt,
    sigmoid,
)
from faceprint.evaluate.metrics import DEFAULT_TARGET_FARS, FloatArray, as_labels, as_scores
from faceprint.models.spec import Calibration, QualityModel, QualityTerm
from faceprint.types import FaceQuality

QUALITY_METHOD = "quality-logistic-newton"
"""``provenance["method"]`` of a quality-aware calibration."""

DEFAULT_FEATURES = ("fallback_stage", "max_abs_yaw_deg", "min_hog_score")
"""The shipped terms: chosen by cross-validation on LFW DevTrain and CFP folds (docs/calibration.md)."""

DEFAULT_RANGES: Mapping[str, tuple[float, float]] = {"max_abs_yaw_deg": (30.0, 50.0), "min_hog_score": (0.0, 1.2)}
"""The head turn enters as a ramp from 30 to 50 degrees: below 30 the 5-point estimate is mostly noise
on frontal photos (LFW's 75th percentile pair is at 34), above 50 it saturates. The HOG margin enters as a
ramp from 0 to 1.2: above it (LFW's median frontal pair reads 1.37) a face is as frontal as it gets
(docs/calibration.md)."""

DEFAULT_RANGE_QUANTILES = (0.005, 0.995)
"""Features are clamped to this central range of the fitted pairs: the model is not extrapolated."""

FACE_RANGE_QUANTILES = (0.01, 0.99)
"""The face measures recorded as "fitted on" (``QualityModel.face_ranges``): outside them, flags."""

MIN_STAGE_FACES = 20
"""Faces a detector stage needs in the fit to count as fitted (``QualityModel.stages``)."""

_RIDGE = 1e-7  # on the standardised quality terms, per pair: only keeps a term that the data barely constrain finite
_MAX_ITERATIONS = 100
_GRADIENT_TOLERANCE = 1e-9


def pair_feature_matrix(
    qualities_a: Sequence[FaceQuality], qualities_b: Sequence[FaceQuality], features: Sequence[str]
) -> FloatArray:
    """One row per pair, one column per feature (unclamped).

    Example:
        >>> q = FaceQuality(64.0, 1.0, "hog@0", 10.0, 0.0, 99.0, 0.5, 0.0)
        >>> pair_feature_matrix([q], [q], ["min_log2_interocular"]).tolist()
        [[6.0]]
    """
    unknown = [name for name in features if name not in PAIR_FEATURES]
    if unknown:
        raise UsageError(f"unknown pair feature {unknown[0]!r}; known: {', '.join(PAIR_FEATURES)}")
    if len(qualities_a) != len(qualities_b):
        raise UsageError(f"{len(qualities_a)} qualities for a, {len(qualities_b)} for b")
    rows = [[PAIR_FEATURES[name](a, b) for name in features] for a, b in zip(qualities_a, qualities_b, strict=True)]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(features))


def _newton(
    design: FloatArray, targets: FloatArray, ridge: FloatArray, pair_weights: FloatArray
) -> tuple[FloatArray, int, float]:
    weights = np.zeros(design.shape[1])
    total = float(pair_weights.sum())
    # Start from the class prior, like fit_platt.
    prior = float(np.clip(np.dot(pair_weights, targets) / total, 1e-6, 1 - 1e-6))
    weights[1] = math.log(prior / (1.0 - prior))

    def objective(w: FloatArray) -> float:
        z = design @ w
        return float(np.dot(pair_weights, np.logaddexp(0.0, z) - targets * z) + 0.5 * np.sum(ridge * w * w))

    value = objective(weights)
    for iteration in range(1, _MAX_ITERATIONS + 1):
        p = sigmoid(design @ weights)
        gradient = design.T @ (pair_weights * (p - targets)) + ridge * weights
        if np.max(np.abs(gradient)) < _GRADIENT_TOLERANCE * total:
            return weights, iteration - 1, value / total
        hessian = (design * (pair_weights * p * (1.0 - p))[:, None]).T @ design + np.diag(ridge + 1e-12)
        direction = -np.linalg.solve(hessian, gradient)
        decrease = float(gradient @ direction)
        step = 1.0
        while step >= 1e-10:
            candidate = weights + step * direction
            new_value = objective(candidate)
            if new_value <= value + 1e-4 * step * decrease:
                break
            step /= 2.0
        else:
            return weights, iteration, value / total
        weights, value = candidate, new_value
    raise CalibrationFitError(f"the quality-aware fit did not converge in {_MAX_ITERATIONS} Newton steps")


def fit_quality_calibration(
    similarities: npt.ArrayLike,
    labels: npt.ArrayLike,
    qualities_a: Sequence[FaceQuality],
    qualities_b: Sequence[FaceQuality],
    *,
    dataset: str,
    features: Sequence[str] = DEFAULT_FEATURES,
    reference: Mapping[str, float] | None = None,
    range_quantiles: tuple[float, float] = DEFAULT_RANGE_QUANTILES,
    ranges: Mapping[str, tuple[float, float]] | None = DEFAULT_RANGES,
    fitted_on: dt.date | None = None,
    pair_weights: npt.ArrayLike | None = None,
) -> Calibration:
    """Fit ``P(same | s, quality_a, quality_b)`` by maximum likelihood (see the module docstring).

    Args:
        similarities: Cosine similarity per pair.
        labels: ``True`` for genuine pairs.
        qualities_a: The first face's quality per pair.
        qualities_b: The second face's quality per pair.
        dataset: Where the pairs come from, for the provenance.
        features: Pair features (:data:`faceprint.compare.PAIR_FEATURES`); empty is plain Platt.
        reference: The reference pair's feature values (a feature not named: the median of the fitted pairs); the
            calibration's own slope and intercept are this pair's sigmoid, used when a quality is unknown.
        range_quantiles: The central range each feature is clamped to.
        ranges: Fixed clamp ranges for some features, overriding ``range_quantiles`` (e.g. a head turn
            whose effect saturates: ``{"max_abs_yaw_deg": (25.0, 50.0)}`` makes it a ramp).
        fitted_on: The date recorded; ``None`` is today (UTC).
        pair_weights: A positive weight per pair in the likelihood (default 1 each): e.g. so that each
            data set of a pooled fit counts as much as another, whatever its pair count.

    Returns:
        A ``method="quality"`` :class:`~faceprint.models.spec.Calibration`.

    Raises:
        UsageError: Bad inputs, one class only, an unknown feature.
        CalibrationFitError: No convergence, or a fit that is not monotone in similarity.

    Example:
        >>> fit_quality_calibration(s, y, qa, qb, dataset="mine").quality.terms  # doctest: +SKIP
    """
    scores = as_scores(similarities)
    truth = as_labels(labels, length=scores.shape[0])
    if len(qualities_a) != scores.shape[0]:
        raise UsageError(f"{len(qualities_a)} face qualities for {scores.shape[0]} pairs")
    genuine, impostor = int(truth.sum()), int((~truth).sum())
    if genuine == 0 or impostor == 0:
        raise UsageError(f"calibration needs both classes: {genuine} genuine, {impostor} impostor")
    if pair_weights is None:
        weight = np.ones_like(scores)
    else:
        weight = np.asarray(pair_weights, dtype=np.float64).reshape(-1)
        if weight.shape != scores.shape or not np.all(np.isfinite(weight)) or not np.all(weight > 0):
            raise UsageError(f"pair_weights must be {scores.shape[0]} positive finite numbers")
    names = tuple(features)
    raw = pair_feature_matrix(qualities_a, qualities_b, names)
    low = np.quantile(raw, range_quantiles[0], axis=0) if names else np.zeros(0)
    high = np.quantile(raw, range_quantiles[1], axis=0) if names else np.zeros(0)
    for k, name in enumerate(names):
        if ranges is not None and name in ranges:
            low[k], high[k] = ranges[name]
    clamped = np.clip(raw, low, high)
    centre = np.array(
        [
            float(reference[name]) if reference is not None and name in reference else float(np.median(clamped[:, k]))
            for k, name in enumerate(names)
        ]
    )
    centre = np.clip(centre, low, high)
    spread = np.where(high > low, clamped.std(axis=0), 1.0) if names else np.zeros(0)
    spread = np.where(spread > 0, spread, 1.0)
    standard = (clamped - centre) / spread
    design = np.column_stack([scores, np.ones_like(scores), standard * scores[:, None], standard])
    targets = np.where(truth, (genuine + 1.0) / (genuine + 2.0), 1.0 / (impostor + 2.0))
    ridge = np.r_[0.0, 0.0, np.full(2 * len(names), _RIDGE * scores.shape[0])]
    weights, iterations, mean_log_loss = _newton(design, targets, ridge, weight)
    count = len(names)
    slopes = weights[2 : 2 + count] / spread
    intercepts = weights[2 + count :] / spread
    terms = tuple(
        QualityTerm(
            feature=name,
            reference=float(centre[k]),
            low=float(low[k]),
            high=float(high[k]),
            slope=float(slopes[k]),
            intercept=float(intercepts[k]),
        )
        for k, name in enumerate(names)
    )
    measures = [face_measures(q) for q in (*qualities_a, *qualities_b)]
    face_ranges = {
        name: (
            float(np.quantile([m[name] for m in measures], FACE_RANGE_QUANTILES[0])),
            float(np.quantile([m[name] for m in measures], FACE_RANGE_QUANTILES[1])),
        )
        for name in measures[0]
    }
    # A stage counts as fitted only with enough faces behind it: 4 low-confidence faces in 18,000 do not
    # make the calibration trustworthy for that stage.
    stage_counts = Counter(q.detector_stage for q in (*qualities_a, *qualities_b))
    stages = tuple(sorted(stage for stage, count in stage_counts.items() if count >= MIN_STAGE_FACES))
    date = fitted_on if fitted_on is not None else dt.datetime.now(dt.UTC).date()
    calibration = Calibration(
        slope=float(weights[0]),
        intercept=float(weights[1]),
        method="quality",
        quality=QualityModel(terms=terms, face_ranges=face_ranges, stages=stages),
        provenance={
            "dataset": dataset,
            "genuine_pairs": genuine,
            "impostor_pairs": impostor,
            "fitted_on": date.isoformat(),
            "method": QUALITY_METHOD,
            "features": list(names),
            "target_smoothing": True,
            "ridge": _RIDGE,
            "range_quantiles": list(range_quantiles),
            "fixed_ranges": {} if ranges is None else {name: list(bounds) for name, bounds in ranges.items()},
            "face_range_quantiles": list(FACE_RANGE_QUANTILES),
            "newton_iterations": iterations,
            "mean_log_loss": mean_log_loss,
            "weighted": pair_weights is not None,
            "similarity_range": [float(scores.min()), float(scores.max())],
        },
    )
    check_monotone(calibration)
    return calibration


def apply_quality_calibration(
    calibration: Calibration,
    similarities: npt.ArrayLike,
    qualities_a: Sequence[FaceQuality | None],
    qualities_b: Sequence[FaceQuality | None],
) -> FloatArray:
    """P(same person) per pair, by exactly the rule :class:`faceprint.compare.Comparator` uses.

    Example:
        >>> apply_quality_calibration(Calibration(slope=10.0, intercept=-5.0), [0.5], [None], [None]).tolist()
        [0.5]
    """
    return sigmoid(pair_logits(calibration, similarities, qualities_a, qualities_b))


def fit_calibration(
    similarities: npt.ArrayLike,
    labels: npt.ArrayLike,
    qualities_a: Sequence[FaceQuality] | None,
    qualities_b: Sequence[FaceQuality] | None,
    *,
    method: str,
    dataset: str,
    fitted_on: dt.date | None = None,
    features: Sequence[str] = DEFAULT_FEATURES,
    reference: Mapping[str, float] | None = None,
    pair_weights: npt.ArrayLike | None = None,
) -> Calibration:
    """``method="platt"`` (similarity only) or ``"quality"`` (needs both quality lists).

    Example:
        >>> fit_calibration([0.1, 0.3, 0.5, 0.7], [False, True, False, True], None, None,
        ...                 method="platt", dataset="toy").method
        'platt'
    """
    if method == "platt":
        return fit_platt(similarities, labels, dataset=dataset, fitted_on=fitted_on)
    if method != "quality":
        raise UsageError(f"calibration method must be platt or quality, not {method!r}")
    if qualities_a is None or qualities_b is None:
        raise UsageError("a quality-aware calibration needs the face quality of every scored pair")
    return fit_quality_calibration(
        similarities,
        labels,
        qualities_a,
        qualities_b,
        dataset=dataset,
        features=features,
        reference=reference,
        fitted_on=fitted_on,
        pair_weights=pair_weights,
    )


def pair_logits(
    calibration: Calibration,
    similarities: npt.ArrayLike,
    qualities_a: Sequence[FaceQuality | None],
    qualities_b: Sequence[FaceQuality | None],
) -> FloatArray:
    """The calibrated logit per pair (monotone in P(same), and never saturated like a probability).

    Example:
        >>> pair_logits(Calibration(slope=10.0, intercept=-5.0), [0.5, 0.6], [None] * 2, [None] * 2).tolist()
        [0.0, 1.0]
    """
    scores = as_scores(similarities)
    logits = np.empty_like(scores)
    for index, (score, a, b) in enumerate(zip(scores, qualities_a, qualities_b, strict=True)):
        slope, intercept, _ = sigmoid_for_quality(calibration, a, b)
        logits[index] = slope * score + intercept
    return logits


def _with_far_model(
    calibration: Calibration,
    scores: FloatArray,
    truth: npt.NDArray[np.bool_],
    qualities_a: Sequence[FaceQuality],
    qualities_b: Sequence[FaceQuality],
    target_fars: Sequence[float],
) -> Calibration:
    """Add the impostor model that gives FAR thresholds per pair quality (``QualityModel.far_*``).

    Impostor similarity ``s = location(x) + scale(x) * z``, with location and scale linear in the clamped
    pair features ``x`` (least squares on ``s``, then on ``|s - location|``), and the FAR-``f`` threshold
    ``location(x) + z_f * scale(x)`` where ``z_f`` is the ``1 - f`` quantile of the standardised residuals
    of all fitted impostors. Pooling the residuals is what makes a 1e-3 tail measurable on a few
    thousand impostors while the threshold still follows each pair's quality. A FAR is kept only where
    the impostor count resolves it (at least ``1 / f`` impostors); a scale that would not stay positive
    over the feature box is replaced by a constant.
    """
    model = calibration.quality
    if model is None:
        return calibration
    impostor = np.flatnonzero(~truth)
    features = np.array(
        [[1.0, *_clamped(model, qualities_a[i], qualities_b[i])] for i in impostor.tolist()], dtype=np.float64
    ).reshape(impostor.shape[0], len(model.terms) + 1)
    similarity = scores[impostor]
    location, *_ = np.linalg.lstsq(features, similarity, rcond=None)
    residual = similarity - features @ location
    scale, *_ = np.linalg.lstsq(features, np.abs(residual), rcond=None)
    corners = itertools.product(*((term.low, term.high) for term in model.terms))
    if min(float(np.dot(scale, [1.0, *corner])) for corner in corners) <= 0.0:
        scale = np.r_[np.mean(np.abs(residual)), np.zeros(len(model.terms))]
    standardised = residual / (features @ scale)
    quantiles = {
        far_key(far): float(np.quantile(standardised, 1.0 - far, method="higher"))
        for far in target_fars
        if impostor.shape[0] * far >= 1.0
    }
    return replace(
        calibration,
        quality=replace(
            model,
            far_location=tuple(float(v) for v in location),
            far_scale=tuple(float(v) for v in scale),
            far_quantiles=quantiles,
        ),
        provenance={**calibration.provenance, "far_method": "impostor_location_scale_pooled_quantile"},
    )


def _clamped(model: QualityModel, quality_a: FaceQuality, quality_b: FaceQuality) -> list[float]:
    return [min(t.high, max(t.low, PAIR_FEATURES[t.feature](quality_a, quality_b))) for t in model.terms]


def make_quality_calibration_record(
    similarities: npt.ArrayLike,
    labels: npt.ArrayLike,
    qualities_a: Sequence[FaceQuality],
    qualities_b: Sequence[FaceQuality],
    *,
    contract_id: str,
    dataset: str,
    target_fars: Sequence[float] = DEFAULT_TARGET_FARS,
    features: Sequence[str] = DEFAULT_FEATURES,
    reference: Mapping[str, float] | None = None,
    ranges: Mapping[str, tuple[float, float]] | None = DEFAULT_RANGES,
    fitted_on: dt.date | None = None,
    pair_weights: npt.ArrayLike | None = None,
) -> CalibrationRecord:
    """Everything a quality-aware ``calib.json`` holds, fitted on one set of scored pairs.

    The operating ``threshold`` is the reference pair's 50% point, so that with
    :class:`faceprint.compare.Comparator` every pair matches exactly when P(same) >= 0.5. FAR thresholds
    come from an impostor model per pair quality (see :func:`_with_far_model`); ``far_thresholds`` holds
    the reference pair's, and :meth:`faceprint.compare.Comparator.far_threshold` gives any pair's. Keys
    the impostor count cannot resolve are left out.
    ``pair_weights`` weigh the pairs in the sigmoid's likelihood (:func:`fit_quality_calibration`); the
    impostor model counts every pair once.

    Example:
        >>> record = make_quality_calibration_record(s, y, qa, qb, contract_id=c, dataset="d")  # doctest: +SKIP
    """
    scores = as_scores(similarities)
    truth = as_labels(labels, length=scores.shape[0])
    calibration = fit_quality_calibration(
        scores,
        truth,
        qualities_a,
        qualities_b,
        dataset=dataset,
        features=features,
        reference=reference,
        ranges=ranges,
        fitted_on=fitted_on,
        pair_weights=pair_weights,
    )
    calibration = _with_far_model(calibration, scores, truth, qualities_a, qualities_b, target_fars)
    model = calibration.quality
    reference_features = [1.0, *(term.reference for term in model.terms)] if model is not None else [1.0]
    far_thresholds = {}
    if model is not None and model.far_location:
        location = float(np.dot(model.far_location, reference_features))
        scale = max(float(np.dot(model.far_scale, reference_features)), 1e-6)
        far_thresholds = {key: location + z * scale for key, z in model.far_quantiles.items()}
    return CalibrationRecord(
        calibration=calibration,
        contract_id=contract_id,
        threshold=-calibration.intercept / calibration.slope,
        far_thresholds=far_thresholds,
    )
