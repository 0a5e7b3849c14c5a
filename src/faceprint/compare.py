"""Compare faceprints: similarity, distance, calibrated probability, match at a threshold, honest flags.

*Similarity* is the cosine of the two vectors (higher = more alike). *Distance* is the Euclidean distance
between the unit vectors, ``sqrt(2 - 2 * similarity)`` (lower = more alike), so a ``max_distance`` cut-off
and a ``min_similarity`` cut-off describe the same decision. *Probability* is P(same person) from the
model's fitted calibration (see docs/calibration.md).

A quality-aware calibration (``Calibration.method == "quality"``) makes the sigmoid's slope and intercept
linear functions of a few *pair features* of the two faces' :class:`~faceprint.types.FaceQuality`
(:data:`PAIR_FEATURES`), each clamped to the range it was fitted on, and centred on a reference pair
(two frontal, well-sized faces) whose sigmoid is the calibration's own ``slope`` and ``intercept``. The
probability is monotone in similarity for any qualities: the fit checks that the slope is positive at
every corner of the clamped feature box, and the slope is linear in the features.

Thresholds follow the probability: a minimum similarity ``t`` chosen for the reference pair (the
operating threshold, a FAR threshold, a user's ``--threshold``) stands for the confidence level
``logit = slope * t + intercept``; a pair of other quality needs the similarity that reaches the *same*
level under its own sigmoid. With the shipped calibration the operating threshold is the reference
pair's 50% point, so a pair matches exactly when its probability is at least 0.5.

Flags (:attr:`~faceprint.types.Comparison.flags`) say when a probability deserves less trust:

- ``low_quality``: a face is smaller or blurrier than the faces the calibration was fitted on, or was
  found by a detector stage the fit never saw (the low-confidence HOG pass, an assumed centre crop);
- ``out_of_range``: a face is turned or tilted further than the faces the calibration was fitted on;
- ``quality_unknown``: a faceprint carries no quality (made before quality was measured), so the
  reference sigmoid was used.

Example:
    >>> import numpy as np
    >>> cosine_similarity(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    0.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

from faceprint.errors import InvalidArgumentError
from faceprint.models.spec import Calibration, ModelSpec, QualityModel
from faceprint.types import Comparison, Faceprint, FaceQuality

LOW_QUALITY = "low_quality"
OUT_OF_RANGE = "out_of_range"
QUALITY_UNKNOWN = "quality_unknown"
COMPARISON_FLAGS = (LOW_QUALITY, OUT_OF_RANGE, QUALITY_UNKNOWN)


def _max_abs_yaw(a: FaceQuality, b: FaceQuality) -> float:
    return max(abs(a.yaw_deg), abs(b.yaw_deg))


def _max_abs_pitch(a: FaceQuality, b: FaceQuality) -> float:
    return max(abs(a.pitch_deg), abs(b.pitch_deg))


def _min_log2_interocular(a: FaceQuality, b: FaceQuality) -> float:
    return math.log2(max(1.0, min(a.interocular_px, b.interocular_px)))


def _min_log10_blur(a: FaceQuality, b: FaceQuality) -> float:
    return math.log10(1.0 + max(0.0, min(a.blur_laplacian_var, b.blur_laplacian_var)))


FALLBACK_STAGES = frozenset({"mmod", "low_confidence", "assumed_crop", "other"})
"""Detector stages of the default cascade past the frontal HOG passes: a face only they found is hard
(on CFP 62% of profile photos and 0.5% of frontal ones)."""


def _fallback_stage(a: FaceQuality, b: FaceQuality) -> float:
    return 1.0 if a.detector_stage in FALLBACK_STAGES or b.detector_stage in FALLBACK_STAGES else 0.0


def _min_hog_score(a: FaceQuality, b: FaceQuality) -> float:
    # The frontal HOG detector's margin says how frontal a face it found is: on CFP, profiles that HOG still
    # found score a median 0.24 (the lower of a pair), frontal photos 1.3. A face only a later stage found
    # has no HOG margin; it counts as 0, the least frontal.
    return min(0.0 if q.detector_stage in FALLBACK_STAGES else q.detector_score for q in (a, b))


PAIR_FEATURES: Mapping[str, Callable[[FaceQuality, FaceQuality], float]] = {
    "fallback_stage": _fallback_stage,
    "min_hog_score": _min_hog_score,
    "max_abs_yaw_deg": _max_abs_yaw,
    "max_abs_pitch_deg": _max_abs_pitch,
    "min_log2_interocular": _min_log2_interocular,
    "min_log10_blur": _min_log10_blur,
}
"""Pair features a quality calibration may use: symmetric in the two faces, so P(a, b) = P(b, a)."""


def face_measures(quality: FaceQuality) -> dict[str, float]:
    """The per-face measures whose fitted range a quality calibration records (``QualityModel.face_ranges``).

    Example:
        >>> q = FaceQuality(40.0, 1.0, "hog@1", -20.0, 3.0, 150.0, 0.5, 0.0)
        >>> face_measures(q)["abs_yaw_deg"]
        20.0
    """
    return {
        "interocular_px": quality.interocular_px,
        "abs_yaw_deg": abs(quality.yaw_deg),
        "abs_pitch_deg": abs(quality.pitch_deg),
        "blur_laplacian_var": quality.blur_laplacian_var,
    }


_LOWER_IS_WORSE = ("interocular_px", "blur_laplacian_var")
"""Measures below their fitted range mean a worse face (``low_quality``); the others (pose) flag
``out_of_range`` above theirs."""


def cosine_similarity(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    va = np.asarray(a, dtype=np.float64)
    vb = np.asarray(b, dtype=np.float64)
    denominator = float(np.linalg.norm(va) * np.linalg.norm(vb))
    if denominator == 0.0:
        return 0.0
    return float(np.clip(np.dot(va, vb) / denominator, -1.0, 1.0))


def distance_from_similarity(similarity: float) -> float:
    return math.sqrt(max(0.0, 2.0 - 2.0 * similarity))


def similarity_from_distance(distance: float) -> float:
    return 1.0 - distance * distance / 2.0


def _sigmoid(logit: float) -> float:
    # Computed without overflow for large |logit|.
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    exp_logit = math.exp(logit)
    return exp_logit / (1.0 + exp_logit)


def probability_from_similarity(calibration: Calibration, similarity: float) -> float:
    """The reference sigmoid: ``1 / (1 + exp(-(slope * s + intercept)))`` (face quality not used)."""
    return _sigmoid(calibration.slope * similarity + calibration.intercept)


def sigmoid_for_quality(
    calibration: Calibration, quality_a: FaceQuality | None, quality_b: FaceQuality | None
) -> tuple[float, float, bool]:
    """The ``(slope, intercept)`` of the sigmoid for a pair of faces, and whether a feature was clamped.

    A plain Platt calibration, or a pair with an unknown quality, gets the calibration's own sigmoid.

    Example:
        >>> sigmoid_for_quality(Calibration(slope=10.0, intercept=-5.0), None, None)
        (10.0, -5.0, False)
    """
    model = calibration.quality
    if model is None or quality_a is None or quality_b is None:
        return calibration.slope, calibration.intercept, False
    slope, intercept, clamped = calibration.slope, calibration.intercept, False
    for term in model.terms:
        value = PAIR_FEATURES[term.feature](quality_a, quality_b)
        bounded = min(term.high, max(term.low, value))
        clamped = clamped or bounded != value
        slope += term.slope * (bounded - term.reference)
        intercept += term.intercept * (bounded - term.reference)
    return slope, intercept, clamped


def _clamped_features(model: QualityModel, quality_a: FaceQuality, quality_b: FaceQuality) -> list[float]:
    return [min(t.high, max(t.low, PAIR_FEATURES[t.feature](quality_a, quality_b))) for t in model.terms]


def far_threshold_for_quality(
    calibration: Calibration, key: str, quality_a: FaceQuality | None, quality_b: FaceQuality | None
) -> float | None:
    """The minimum similarity for false-accept rate ``key`` (``"1e-3"``) for a pair of these qualities.

    Impostor similarities are modelled per pair quality by a location and a scale linear in the clamped
    pair features; the threshold is ``location + z_far * scale`` with ``z_far`` the standardised impostor
    residual measured at that FAR. ``None`` when the calibration has no such model or key, or a quality
    is unknown.

    Example:
        >>> far_threshold_for_quality(Calibration(slope=1.0, intercept=0.0), "1e-3", None, None) is None
        True
    """
    model = calibration.quality
    if model is None or quality_a is None or quality_b is None or key not in model.far_quantiles:
        return None
    if len(model.far_location) != len(model.terms) + 1 or len(model.far_scale) != len(model.terms) + 1:
        return None
    features = [1.0, *_clamped_features(model, quality_a, quality_b)]
    location = sum(c * x for c, x in zip(model.far_location, features, strict=True))
    scale = sum(c * x for c, x in zip(model.far_scale, features, strict=True))
    return location + model.far_quantiles[key] * max(scale, _MIN_FAR_SCALE)


_MIN_FAR_SCALE = 1e-6  # the fit checks the scale is positive over the feature box; this only guards rounding


def quality_flags(model: QualityModel, qualities: tuple[FaceQuality, ...]) -> tuple[str, ...]:
    """``low_quality`` / ``out_of_range`` for faces outside what ``model`` was fitted on.

    Only the bad side of each range flags: a face smaller or blurrier than the fitted ones is
    ``low_quality``, one turned or tilted further is ``out_of_range``; a bigger, sharper or more frontal
    face than any fitted raises nothing (its pair features are clamped, not extrapolated).

    Example:
        >>> from faceprint.models.spec import QualityModel
        >>> model = QualityModel(terms=(), face_ranges={"interocular_px": (20.0, 300.0)}, stages=("hog@0",))
        >>> quality_flags(model, (FaceQuality(12.0, 1.0, "hog@0", 0.0, 0.0, 100.0, 0.5, 0.0),))
        ('low_quality',)
    """
    low = out = False
    for quality in qualities:
        if model.stages and quality.detector_stage not in model.stages:
            low = True
        for name, value in face_measures(quality).items():
            if name not in model.face_ranges:
                continue
            lower, upper = model.face_ranges[name]
            if name in _LOWER_IS_WORSE:
                low = low or value < lower
            else:
                out = out or value > upper
    return tuple(flag for flag, raised in ((LOW_QUALITY, low), (OUT_OF_RANGE, out)) if raised)


class Comparator:
    """Compares faceprints of one embedding model with its calibration and operating threshold.

    ``threshold`` (default: the model's) is a minimum similarity for a pair at the calibration's reference
    quality; with a quality-aware calibration each pair's own threshold reaches the same probability
    level (see the module docstring), so ``Comparison.threshold`` can differ from pair to pair.

    Example:
        >>> comparator = Comparator(spec)           # doctest: +SKIP
        >>> comparator.compare(a, b).probability   # doctest: +SKIP
        0.993
    """

    def __init__(self, spec: ModelSpec, *, calibration: Calibration | None = None, threshold: float | None = None):
        if spec.task != "embedding":
            raise InvalidArgumentError(f"{spec.id} is not an embedding model")
        calibration = calibration if calibration is not None else spec.calibration
        if calibration is None:
            raise InvalidArgumentError(f"{spec.id} has no calibration; pass one")
        threshold = threshold if threshold is not None else spec.default_threshold
        if threshold is None:
            raise InvalidArgumentError(f"{spec.id} has no default threshold; pass one")
        self.spec = spec
        self.calibration = calibration
        self.threshold = float(threshold)

    def probability(
        self, similarity: float, quality_a: FaceQuality | None = None, quality_b: FaceQuality | None = None
    ) -> float:
        """P(same person) at ``similarity`` for faces of these qualities (``None``: the reference pair)."""
        return _sigmoid(self.logit(similarity, quality_a, quality_b))

    def logit(
        self, similarity: float, quality_a: FaceQuality | None = None, quality_b: FaceQuality | None = None
    ) -> float:
        """The calibrated log-odds of :meth:`probability` (ranks sure matches that all read P = 1.0)."""
        slope, intercept, _ = sigmoid_for_quality(self.calibration, quality_a, quality_b)
        return slope * similarity + intercept

    def threshold_for(
        self,
        quality_a: FaceQuality | None,
        quality_b: FaceQuality | None,
        *,
        min_similarity: float | None = None,
    ) -> float:
        """The minimum similarity a pair of these qualities needs, for a reference-pair ``min_similarity``.

        ``min_similarity`` defaults to the operating threshold; pass a FAR threshold
        (``spec.far_thresholds["1e-3"]``) or an identification cut-off to move that one instead. With a
        plain Platt calibration, or an unknown quality, it is returned unchanged.

        Example:
            >>> comparator.threshold_for(profile_quality, frontal_quality)  # doctest: +SKIP
            0.86
        """
        reference = self.threshold if min_similarity is None else float(min_similarity)
        if self.calibration.quality is None or quality_a is None or quality_b is None:
            return reference
        level = self.calibration.slope * reference + self.calibration.intercept
        slope, intercept, _ = sigmoid_for_quality(self.calibration, quality_a, quality_b)
        return (level - intercept) / slope

    def far_threshold(self, key: str, quality_a: FaceQuality | None, quality_b: FaceQuality | None) -> float | None:
        """The minimum similarity for false-accept rate ``key`` (``"1e-3"``) for a pair of these qualities.

        With a quality-aware calibration and known qualities: the impostor model's threshold for such a
        pair (:func:`far_threshold_for_quality`); else the model's fixed ``far_thresholds[key]``;
        ``None`` when neither knows the key.

        Example:
            >>> comparator.far_threshold("1e-3", query.quality, candidate.quality)  # doctest: +SKIP
            0.931
        """
        per_pair = far_threshold_for_quality(self.calibration, key, quality_a, quality_b)
        if per_pair is not None:
            return per_pair
        return self.spec.far_thresholds.get(key)

    def flags(self, quality_a: FaceQuality | None, quality_b: FaceQuality | None) -> tuple[str, ...]:
        """The :data:`COMPARISON_FLAGS` raised for a pair of faces of these qualities."""
        model = self.calibration.quality
        if model is None:
            return ()
        if quality_a is None or quality_b is None:
            return (QUALITY_UNKNOWN,)
        return quality_flags(model, (quality_a, quality_b))

    def compare(self, a: Faceprint, b: Faceprint) -> Comparison:
        a.check_contract(b)
        similarity = cosine_similarity(a.vector, b.vector)
        threshold = self.threshold_for(a.quality, b.quality)
        return Comparison(
            similarity=similarity,
            distance=distance_from_similarity(similarity),
            probability=self.probability(similarity, a.quality, b.quality),
            is_match=similarity >= threshold,
            threshold=threshold,
            flags=self.flags(a.quality, b.quality),
        )
