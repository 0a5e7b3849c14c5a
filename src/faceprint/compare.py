"""Compare faceprints: similarity, distance, calibrated probability, match at a threshold.

*Similarity* is the cosine of the two vectors (higher = more alike). *Distance* is the Euclidean distance
between the unit vectors, ``sqrt(2 - 2 * similarity)`` (lower = more alike), so a ``max_distance`` cut-off
and a ``min_similarity`` cut-off describe the same decision. *Probability* is P(same person) from the
model's fitted calibration (see docs/calibration.md).

Example:
    >>> import numpy as np
    >>> cosine_similarity(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    0.0
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from faceprint.models.spec import Calibration, ModelSpec
from faceprint.types import Comparison, Faceprint


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


def probability_from_similarity(calibration: Calibration, similarity: float) -> float:
    """Platt mapping, computed without overflow for large |logit|."""
    logit = calibration.slope * similarity + calibration.intercept
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    exp_logit = math.exp(logit)
    return exp_logit / (1.0 + exp_logit)


class Comparator:
    """Compares faceprints of one embedding model with its calibration and operating threshold.

    Example:
        >>> comparator = Comparator(spec)           # doctest: +SKIP
        >>> comparator.compare(a, b).probability   # doctest: +SKIP
        0.993
    """

    def __init__(self, spec: ModelSpec, *, calibration: Calibration | None = None, threshold: float | None = None):
        if spec.task != "embedding":
            raise ValueError(f"{spec.id} is not an embedding model")
        calibration = calibration if calibration is not None else spec.calibration
        if calibration is None:
            raise ValueError(f"{spec.id} has no calibration; pass one")
        threshold = threshold if threshold is not None else spec.default_threshold
        if threshold is None:
            raise ValueError(f"{spec.id} has no default threshold; pass one")
        self.spec = spec
        self.calibration = calibration
        self.threshold = float(threshold)

    def probability(self, similarity: float) -> float:
        return probability_from_similarity(self.calibration, similarity)

    def compare(self, a: Faceprint, b: Faceprint) -> Comparison:
        a.check_contract(b)
        similarity = cosine_similarity(a.vector, b.vector)
        return Comparison(
            similarity=similarity,
            distance=distance_from_similarity(similarity),
            probability=self.probability(similarity),
            is_match=similarity >= self.threshold,
            threshold=self.threshold,
        )
