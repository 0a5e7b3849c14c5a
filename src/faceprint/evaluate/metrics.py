"""Face-verification metrics on similarity scores: ROC, AUC, EER, TAR@FAR, accuracy, ECE, Brier.

Conventions, everywhere in this module:

- ``similarities`` are scores where higher means more alike (cosine similarity for faceprint);
- ``labels`` are ``True`` for a genuine pair (same person) and ``False`` for an impostor pair;
- a pair is *accepted* (declared "same") when ``similarity >= min_similarity``;
- FAR (false accept rate, = FMR) is the share of impostor pairs accepted, TAR (= 1 - FRR/FNMR) the share
  of genuine pairs accepted.

Results are frozen dataclasses whose field names carry their unit or meaning (``false_accept_rate``,
``min_similarity``, ``impostor_count``). Rates that the data cannot support are ``None`` with a note,
never a number that only looks precise: a FAR of 1e-3 needs at least 1,000 impostor pairs to be resolved.

Example:
    >>> import numpy as np
    >>> scores = np.array([0.9, 0.8, 0.4, 0.3])
    >>> labels = np.array([True, True, False, False])
    >>> area_under_roc(scores, labels)
    1.0
    >>> metrics_at_threshold(scores, labels, min_similarity=0.5).accuracy
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from faceprint.errors import UsageError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

DEFAULT_TARGET_FARS: tuple[float, ...] = (1e-1, 1e-2, 1e-3)
DEFAULT_FOLD_COUNT = 10
DEFAULT_BIN_COUNT = 10


# --- input checks ------------------------------------------------------------------------------------


def as_labels(labels: npt.ArrayLike, *, length: int | None = None) -> BoolArray:
    """Labels as a 1-d bool array; accepts bools or the integers 0/1.

    Raises:
        UsageError: Not 1-d, a value other than 0/1/True/False, or a length other than ``length``.

    Example:
        >>> as_labels([1, 0, True]).tolist()
        [True, False, True]
    """
    array = np.asarray(labels)
    if array.ndim != 1:
        raise UsageError(f"labels must be 1-d, got shape {array.shape}")
    if array.dtype != np.bool_:
        if array.size and not (array.dtype.kind in "iuf" and np.isin(array, (0, 1)).all()):
            raise UsageError("labels must be booleans or 0/1")
        array = array.astype(np.bool_)
    if length is not None and array.shape[0] != length:
        raise UsageError(f"{array.shape[0]} labels for {length} scores")
    return array


def as_scores(values: npt.ArrayLike, *, name: str = "similarities") -> FloatArray:
    """Scores as a 1-d, finite, non-empty float64 array.

    Example:
        >>> as_scores([1, 0.5]).dtype
        dtype('float64')
    """
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise UsageError(f"{name} must be numbers: {err}") from err
    if array.ndim != 1 or array.size == 0:
        raise UsageError(f"{name} must be a non-empty 1-d array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise UsageError(f"{name} must be finite (score unscored pairs separately, see evaluate.report)")
    return array


def _scores_and_labels(similarities: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[FloatArray, BoolArray]:
    scores = as_scores(similarities)
    return scores, as_labels(labels, length=scores.shape[0])


def _require_both_classes(labels: BoolArray) -> tuple[int, int]:
    genuine_count = int(labels.sum())
    impostor_count = int(labels.shape[0] - genuine_count)
    if genuine_count == 0 or impostor_count == 0:
        raise UsageError(
            f"needs genuine and impostor pairs, got {genuine_count} genuine and {impostor_count} impostor",
            details={"genuine_count": genuine_count, "impostor_count": impostor_count},
        )
    return genuine_count, impostor_count


def _readonly(array: npt.NDArray[np.generic]) -> None:
    array.setflags(write=False)


# --- ROC, AUC, EER -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class RocCurve:
    """The ROC: one point per distinct similarity, from accept-nothing to accept-everything.

    ``min_similarity[k]`` is the threshold of point ``k`` (pairs with ``similarity >= min_similarity[k]``
    are accepted); it decreases, and point 0 is ``+inf`` (accept nothing), as in scikit-learn's
    ``roc_curve(..., drop_intermediate=False)``. Arrays are read-only.
    """

    false_accept_rate: FloatArray
    true_accept_rate: FloatArray
    min_similarity: FloatArray
    genuine_count: int
    impostor_count: int

    @property
    def false_reject_rate(self) -> FloatArray:
        """FRR (= FNMR) at each point: ``1 - true_accept_rate``."""
        return 1.0 - self.true_accept_rate

    @property
    def area_under_curve(self) -> float:
        """AUC, by trapezoids (see :func:`area_under_roc`)."""
        far, tar = self.false_accept_rate, self.true_accept_rate
        # A run of tied scores is one diagonal segment: its trapezoid counts each tie as one half.
        return float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2.0))


def roc_curve(similarities: npt.ArrayLike, labels: npt.ArrayLike) -> RocCurve:
    """The full ROC (no points dropped).

    Args:
        similarities: One score per pair, higher = more alike.
        labels: ``True`` for genuine pairs.

    Returns:
        A :class:`RocCurve` with ``1 + number of distinct scores`` points.

    Raises:
        UsageError: Bad shapes, non-finite scores, or only one class.

    Example:
        >>> roc = roc_curve([0.9, 0.5, 0.5, 0.1], [True, True, False, False])
        >>> roc.false_accept_rate.tolist(), roc.true_accept_rate.tolist()
        ([0.0, 0.0, 0.5, 1.0], [0.0, 0.5, 1.0, 1.0])
    """
    scores, truth = _scores_and_labels(similarities, labels)
    genuine_count, impostor_count = _require_both_classes(truth)
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    # The last index of each run of equal scores: tied pairs are accepted or rejected together.
    run_ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.shape[0] - 1]
    true_accepts = np.cumsum(truth[order])[run_ends]
    false_accepts = run_ends + 1 - true_accepts
    far = np.r_[0.0, false_accepts / impostor_count]
    tar = np.r_[0.0, true_accepts / genuine_count]
    thresholds = np.r_[np.inf, sorted_scores[run_ends]]
    for array in (far, tar, thresholds):
        _readonly(array)
    return RocCurve(
        false_accept_rate=far,
        true_accept_rate=tar,
        min_similarity=thresholds,
        genuine_count=genuine_count,
        impostor_count=impostor_count,
    )


def area_under_roc(similarities: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """AUC: the probability that a random genuine pair scores above a random impostor pair (ties count 1/2).

    Example:
        >>> area_under_roc([0.9, 0.5, 0.5, 0.1], [True, True, False, False])
        0.875
    """
    return roc_curve(similarities, labels).area_under_curve


@dataclass(frozen=True, slots=True)
class EqualErrorRate:
    """The error rate where FAR equals FRR, and a threshold near it.

    ``equal_error_rate`` is interpolated linearly between the two ROC points around the crossing;
    ``min_similarity`` is the threshold of whichever of those two points has the smaller ``|FAR - FRR|``.
    """

    equal_error_rate: float
    min_similarity: float


def equal_error_rate(similarities: npt.ArrayLike, labels: npt.ArrayLike) -> EqualErrorRate:
    """The EER (FAR = FRR).

    Example:
        >>> equal_error_rate([0.9, 0.8, 0.7, 0.6], [True, False, True, False]).equal_error_rate
        0.5
    """
    return _equal_error(roc_curve(similarities, labels))


def _equal_error(roc: RocCurve) -> EqualErrorRate:
    far, frr = roc.false_accept_rate, roc.false_reject_rate
    gap = far - frr  # rises from -1 (accept nothing) to +1 (accept everything)
    k = int(np.argmax(gap >= 0.0))
    if gap[k] == 0.0:
        return EqualErrorRate(equal_error_rate=float(far[k]), min_similarity=float(roc.min_similarity[k]))
    step = -gap[k - 1] / (gap[k] - gap[k - 1])
    rate = float(far[k - 1] + step * (far[k] - far[k - 1]))
    # gap[0] == -1, so k - 1 is only picked when it is a real threshold (|gap[k]| <= 1 wins ties).
    nearest = k - 1 if abs(gap[k - 1]) < abs(gap[k]) else k
    return EqualErrorRate(equal_error_rate=rate, min_similarity=float(roc.min_similarity[nearest]))


# --- FAR operating points ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TarAtFar:
    """TAR at the lowest threshold whose FAR on these data is at most ``target_false_accept_rate``.

    ``false_accepts_allowed`` is ``floor(target * impostor_count)``. When it is 0 the data cannot resolve
    the target (the only compliant threshold accepts no impostor at all, which says nothing about a rate
    that small): then ``true_accept_rate``, ``achieved_false_accept_rate`` and ``min_similarity`` are
    ``None`` and ``note`` says why.
    """

    target_false_accept_rate: float
    impostor_count: int
    false_accepts_allowed: int
    true_accept_rate: float | None
    achieved_false_accept_rate: float | None
    min_similarity: float | None
    note: str | None = None

    @property
    def resolved(self) -> bool:
        return self.true_accept_rate is not None


def _check_target_far(target_far: float) -> None:
    if not 0.0 < target_far < 1.0:
        raise UsageError(f"target FAR must be in (0, 1), got {target_far}")


def _false_accepts_allowed(target_far: float, impostor_count: int) -> int:
    # Rounding first keeps 1e-3 * 1000 == 1 from flooring to 0 through a last-bit error.
    return math.floor(round(target_far * impostor_count, 9))


def tar_at_far(similarities: npt.ArrayLike, labels: npt.ArrayLike, *, target_far: float) -> TarAtFar:
    """TAR at a target FAR, or an honest ``None`` when there are too few impostor pairs.

    The threshold sits just above the ``(allowed + 1)``-th highest impostor score: the lowest threshold
    that accepts at most ``allowed`` impostor pairs, so TAR is as high as the FAR target permits.

    Args:
        similarities: One score per pair, higher = more alike.
        labels: ``True`` for genuine pairs.
        target_far: In (0, 1), e.g. ``1e-3``.

    Example:
        >>> scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.95, 0.85]
        >>> labels = [False] * 10 + [True, True]
        >>> result = tar_at_far(scores, labels, target_far=0.1)
        >>> result.true_accept_rate, result.achieved_false_accept_rate
        (1.0, 0.1)
        >>> tar_at_far(scores, labels, target_far=0.01).note
        'FAR 0.01 needs at least 100 impostor pairs, have 10'
    """
    _check_target_far(target_far)
    scores, truth = _scores_and_labels(similarities, labels)
    _require_both_classes(truth)
    return _tar_at_far(scores[truth], scores[~truth], target_far)


def _tar_at_far(genuine: FloatArray, impostor: FloatArray, target_far: float) -> TarAtFar:
    impostor_count = int(impostor.shape[0])
    allowed = _false_accepts_allowed(target_far, impostor_count)
    if allowed == 0:
        needed = math.ceil(round(1.0 / target_far, 9))
        return TarAtFar(
            target_false_accept_rate=target_far,
            impostor_count=impostor_count,
            false_accepts_allowed=0,
            true_accept_rate=None,
            achieved_false_accept_rate=None,
            min_similarity=None,
            note=f"FAR {target_far:g} needs at least {needed} impostor pairs, have {impostor_count}",
        )
    descending = np.sort(impostor)[::-1]
    threshold = float(np.nextafter(descending[allowed], np.inf))
    return TarAtFar(
        target_false_accept_rate=target_far,
        impostor_count=impostor_count,
        false_accepts_allowed=allowed,
        true_accept_rate=float(np.mean(genuine >= threshold)),
        achieved_false_accept_rate=float(np.mean(impostor >= threshold)),
        min_similarity=threshold,
    )


def tar_at_fars(
    similarities: npt.ArrayLike, labels: npt.ArrayLike, *, target_fars: Sequence[float] = DEFAULT_TARGET_FARS
) -> tuple[TarAtFar, ...]:
    """:func:`tar_at_far` for several targets (default 1e-1, 1e-2, 1e-3).

    Example:
        >>> [r.resolved for r in tar_at_fars([0.9, 0.1, 0.2], [True, False, False])]
        [False, False, False]
    """
    for target in target_fars:
        _check_target_far(target)
    scores, truth = _scores_and_labels(similarities, labels)
    _require_both_classes(truth)
    return tuple(_tar_at_far(scores[truth], scores[~truth], target) for target in target_fars)


def threshold_at_far(similarities: npt.ArrayLike, labels: npt.ArrayLike, *, target_far: float) -> float:
    """The minimum similarity whose FAR on these data is at most ``target_far`` (see :func:`tar_at_far`).

    Raises:
        UsageError: Too few impostor pairs to resolve ``target_far``.

    Example:
        >>> threshold_at_far([0.3, 0.2, 0.1, 0.0, 0.9], [False] * 4 + [True], target_far=0.25) > 0.2
        True
    """
    result = tar_at_far(similarities, labels, target_far=target_far)
    if result.min_similarity is None:
        raise UsageError(f"cannot set a threshold: {result.note}", details={"impostor_count": result.impostor_count})
    return result.min_similarity


# --- decisions at a threshold ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThresholdMetrics:
    """Counts and rates of the decisions at one threshold.

    Rates with an empty denominator are ``None``: ``precision`` when nothing was accepted,
    ``recall`` (= TAR) without genuine pairs, ``specificity`` (= 1 - FAR) without impostor pairs,
    ``f1`` (``2TA / (2TA + FA + FR)``) when there is neither a genuine pair nor an acceptance.
    """

    min_similarity: float
    true_accept_count: int
    false_accept_count: int
    true_reject_count: int
    false_reject_count: int
    accuracy: float
    precision: float | None
    recall: float | None
    specificity: float | None
    f1: float | None

    @property
    def pair_count(self) -> int:
        return self.true_accept_count + self.false_accept_count + self.true_reject_count + self.false_reject_count


def _ratio(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else numerator / denominator


def metrics_from_decisions(
    accepted: npt.ArrayLike, labels: npt.ArrayLike, *, min_similarity: float
) -> ThresholdMetrics:
    """Metrics from accept/reject decisions already made (e.g. with unscored pairs rejected).

    Args:
        accepted: ``True`` where the pair was declared "same person".
        labels: ``True`` for genuine pairs.
        min_similarity: The threshold the decisions came from, recorded in the result.

    Example:
        >>> metrics_from_decisions([True, False, False], [True, True, False], min_similarity=0.5).accuracy
        0.6666666666666666
    """
    decisions = as_labels(accepted)
    truth = as_labels(labels, length=decisions.shape[0])
    if decisions.shape[0] == 0:
        raise UsageError("no pairs to measure")
    true_accepts = int(np.sum(decisions & truth))
    false_accepts = int(np.sum(decisions & ~truth))
    true_rejects = int(np.sum(~decisions & ~truth))
    false_rejects = int(np.sum(~decisions & truth))
    return ThresholdMetrics(
        min_similarity=float(min_similarity),
        true_accept_count=true_accepts,
        false_accept_count=false_accepts,
        true_reject_count=true_rejects,
        false_reject_count=false_rejects,
        accuracy=(true_accepts + true_rejects) / decisions.shape[0],
        precision=_ratio(true_accepts, true_accepts + false_accepts),
        recall=_ratio(true_accepts, true_accepts + false_rejects),
        specificity=_ratio(true_rejects, true_rejects + false_accepts),
        f1=_ratio(2 * true_accepts, 2 * true_accepts + false_accepts + false_rejects),
    )


def metrics_at_threshold(
    similarities: npt.ArrayLike, labels: npt.ArrayLike, *, min_similarity: float
) -> ThresholdMetrics:
    """Accuracy, precision, recall, specificity and F1 when accepting ``similarity >= min_similarity``.

    Example:
        >>> m = metrics_at_threshold([0.9, 0.6, 0.4, 0.1], [True, False, True, False], min_similarity=0.5)
        >>> (m.accuracy, m.precision, m.recall, m.specificity)
        (0.5, 0.5, 0.5, 0.5)
    """
    scores, truth = _scores_and_labels(similarities, labels)
    return metrics_from_decisions(scores >= min_similarity, truth, min_similarity=min_similarity)


@dataclass(frozen=True, slots=True)
class AccuracyThreshold:
    """The threshold that maximises accuracy on the data it was chosen on, and that accuracy."""

    min_similarity: float
    accuracy: float


def best_accuracy_threshold(similarities: npt.ArrayLike, labels: npt.ArrayLike) -> AccuracyThreshold:
    """The threshold that maximises accuracy.

    Every threshold strictly between two neighbouring distinct scores gives the same accuracy; the midpoint
    is returned, the choice with the widest margin on both sides. Among equally accurate gaps the highest
    threshold wins (fewer false accepts). If rejecting everything is best, the threshold lies just above
    the highest score; if accepting everything is best, it is the lowest score.

    Example:
        >>> best_accuracy_threshold([0.9, 0.7, 0.3, 0.1], [True, True, False, False])
        AccuracyThreshold(min_similarity=0.5, accuracy=1.0)
    """
    scores, truth = _scores_and_labels(similarities, labels)
    return _best_accuracy(roc_curve(scores, truth))


def _best_accuracy(roc: RocCurve) -> AccuracyThreshold:
    total = roc.genuine_count + roc.impostor_count
    correct = roc.true_accept_rate * roc.genuine_count + (1.0 - roc.false_accept_rate) * roc.impostor_count
    k = int(np.argmax(np.round(correct).astype(np.int64)))
    thresholds = roc.min_similarity
    if k == 0:
        threshold = float(np.nextafter(thresholds[1], np.inf))
    elif k == thresholds.shape[0] - 1:
        threshold = float(thresholds[k])
    else:
        accepted_score, rejected_score = float(thresholds[k]), float(thresholds[k + 1])
        threshold = (accepted_score + rejected_score) / 2.0
        if threshold <= rejected_score:  # adjacent floats: the midpoint rounded down onto the rejected one
            threshold = accepted_score
    return AccuracyThreshold(min_similarity=threshold, accuracy=float(round(correct[k])) / total)


# --- k-fold accuracy (LFW protocol) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KFoldAccuracy:
    """Accuracy over folds, each tested at the threshold chosen on all the other folds (LFW protocol).

    ``std_accuracy`` is the sample standard deviation over folds (ddof = 1);
    ``standard_error`` is ``std_accuracy / sqrt(fold_count)``, the figure LFW asks papers to report.
    ``fold_min_similarities[i]`` is the threshold fold ``fold_ids[i]`` was tested at.
    """

    mean_accuracy: float
    std_accuracy: float
    standard_error: float
    fold_count: int
    fold_ids: tuple[int, ...]
    fold_accuracies: tuple[float, ...]
    fold_min_similarities: tuple[float, ...]
    folds_source: Literal["given", "assigned"]


def assign_folds(labels: npt.ArrayLike, *, fold_count: int = DEFAULT_FOLD_COUNT) -> IntArray:
    """Deterministic, stratified, contiguous folds, like LFW View 2.

    Genuine pairs are cut in file order into ``fold_count`` nearly equal contiguous runs, and so are
    impostor pairs; fold ``i`` is run ``i`` of each. Contiguous rather than round-robin because LFW lists
    are sorted by name: contiguous runs keep most people inside one fold, as View 2 does.

    Example:
        >>> assign_folds([True, True, False, False, True, False], fold_count=2).tolist()
        [0, 0, 0, 0, 1, 1]
    """
    truth = as_labels(labels)
    if fold_count < 2:
        raise UsageError(f"fold_count must be at least 2, got {fold_count}")
    folds = np.empty(truth.shape[0], dtype=np.int64)
    for mask in (truth, ~truth):
        members = np.flatnonzero(mask)
        folds[members] = np.arange(members.shape[0]) * fold_count // max(members.shape[0], 1)
    return folds


def kfold_accuracy(
    similarities: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    folds: npt.ArrayLike | None = None,
    fold_count: int = DEFAULT_FOLD_COUNT,
) -> KFoldAccuracy:
    """k-fold verification accuracy: pick the threshold on k-1 folds, test on the held-out one.

    Args:
        similarities: One score per pair, higher = more alike.
        labels: ``True`` for genuine pairs.
        folds: Fold id per pair (e.g. LFW View 2); ``None`` assigns ``fold_count`` folds with
            :func:`assign_folds`.
        fold_count: Used only when ``folds`` is ``None``.

    Raises:
        UsageError: Fewer than two folds, or a training split without both classes.

    Example:
        >>> scores = [0.9, 0.8, 0.2, 0.1] * 5
        >>> labels = [True, True, False, False] * 5
        >>> kfold_accuracy(scores, labels, fold_count=5).mean_accuracy
        1.0
    """
    scores, truth = _scores_and_labels(similarities, labels)
    _require_both_classes(truth)
    if folds is None:
        fold_of = assign_folds(truth, fold_count=fold_count)
        source: Literal["given", "assigned"] = "assigned"
    else:
        fold_of = np.asarray(folds)
        if fold_of.shape != scores.shape or fold_of.dtype.kind not in "iu":
            raise UsageError(f"folds must be {scores.shape[0]} integers, got {fold_of.dtype} of shape {fold_of.shape}")
        source = "given"
    fold_ids = np.unique(fold_of)
    if fold_ids.shape[0] < 2:
        raise UsageError(f"needs at least 2 folds, got {fold_ids.shape[0]}")

    accuracies: list[float] = []
    thresholds: list[float] = []
    for fold_id in fold_ids:
        test = fold_of == fold_id
        train_truth = truth[~test]
        if train_truth.all() or not train_truth.any():
            raise UsageError(f"the folds other than {fold_id} hold only one class of pair")
        threshold = _best_accuracy(roc_curve(scores[~test], train_truth)).min_similarity
        thresholds.append(threshold)
        accuracies.append(float(np.mean((scores[test] >= threshold) == truth[test])))
    values = np.asarray(accuracies)
    std = float(np.std(values, ddof=1))
    return KFoldAccuracy(
        mean_accuracy=float(values.mean()),
        std_accuracy=std,
        standard_error=std / math.sqrt(values.shape[0]),
        fold_count=int(fold_ids.shape[0]),
        fold_ids=tuple(int(f) for f in fold_ids),
        fold_accuracies=tuple(accuracies),
        fold_min_similarities=tuple(thresholds),
        folds_source=source,
    )


# --- probability quality -----------------------------------------------------------------------------


def as_probabilities(values: npt.ArrayLike) -> FloatArray:
    """Probabilities as a 1-d float64 array, every value in [0, 1].

    Example:
        >>> as_probabilities([0, 0.5, 1]).tolist()
        [0.0, 0.5, 1.0]
    """
    array = as_scores(values, name="probabilities")
    if array.min() < 0.0 or array.max() > 1.0:
        raise UsageError("probabilities must lie in [0, 1]")
    return array


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    """One probability bin ``[lower, upper)`` (the last one closed) of a reliability diagram."""

    lower_probability: float
    upper_probability: float
    pair_count: int
    mean_probability: float | None
    """Mean predicted P(same) in the bin; ``None`` when the bin is empty."""
    observed_same_rate: float | None
    """Share of genuine pairs in the bin; ``None`` when the bin is empty."""


@dataclass(frozen=True, slots=True)
class CalibrationQuality:
    """How well probabilities match outcomes.

    ``expected_calibration_error``: ``sum_b (n_b / n) * |observed_same_rate_b - mean_probability_b|`` over
    equal-width bins. ``brier_score``: mean of ``(p - y)^2``, 0 is perfect, 0.25 is a constant 0.5.
    """

    expected_calibration_error: float
    brier_score: float
    pair_count: int
    bins: tuple[ReliabilityBin, ...]


def brier_score(probabilities: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Mean squared difference between P(same) and the 0/1 outcome.

    Example:
        >>> brier_score([1.0, 0.5], [True, False])
        0.125
    """
    probs = as_probabilities(probabilities)
    truth = as_labels(labels, length=probs.shape[0])
    return float(np.mean((probs - truth) ** 2))


def reliability_bins(
    probabilities: npt.ArrayLike, labels: npt.ArrayLike, *, bin_count: int = DEFAULT_BIN_COUNT
) -> tuple[ReliabilityBin, ...]:
    """Equal-width probability bins with their mean prediction and observed genuine rate.

    Example:
        >>> [b.pair_count for b in reliability_bins([0.05, 0.95, 1.0], [False, True, True], bin_count=2)]
        [1, 2]
    """
    probs = as_probabilities(probabilities)
    truth = as_labels(labels, length=probs.shape[0])
    if bin_count < 1:
        raise UsageError(f"bin_count must be positive, got {bin_count}")
    edges = np.linspace(0.0, 1.0, bin_count + 1)
    # Inner edges only, side="right": p == edge goes up a bin and p == 1.0 stays in the last bin.
    index = np.searchsorted(edges[1:-1], probs, side="right")
    bins: list[ReliabilityBin] = []
    for b in range(bin_count):
        members = index == b
        count = int(members.sum())
        bins.append(
            ReliabilityBin(
                lower_probability=float(edges[b]),
                upper_probability=float(edges[b + 1]),
                pair_count=count,
                mean_probability=float(probs[members].mean()) if count else None,
                observed_same_rate=float(truth[members].mean()) if count else None,
            )
        )
    return tuple(bins)


def expected_calibration_error(
    probabilities: npt.ArrayLike, labels: npt.ArrayLike, *, bin_count: int = DEFAULT_BIN_COUNT
) -> float:
    """ECE over ``bin_count`` equal-width bins (default 10).

    Example:
        >>> expected_calibration_error([0.8, 0.8, 0.8, 0.8, 0.8], [True, True, True, True, False])
        0.0
    """
    return calibration_quality(probabilities, labels, bin_count=bin_count).expected_calibration_error


def calibration_quality(
    probabilities: npt.ArrayLike, labels: npt.ArrayLike, *, bin_count: int = DEFAULT_BIN_COUNT
) -> CalibrationQuality:
    """ECE, Brier score and the reliability bins, in one pass over the inputs.

    Example:
        >>> q = calibration_quality([0.9, 0.1], [True, False])
        >>> round(q.brier_score, 6), round(q.expected_calibration_error, 6)
        (0.01, 0.1)
    """
    probs = as_probabilities(probabilities)
    truth = as_labels(labels, length=probs.shape[0])
    bins = reliability_bins(probs, truth, bin_count=bin_count)
    total = probs.shape[0]
    ece = sum(
        (b.pair_count / total) * abs(b.observed_same_rate - b.mean_probability)
        for b in bins
        if b.observed_same_rate is not None and b.mean_probability is not None
    )
    return CalibrationQuality(
        expected_calibration_error=float(ece),
        brier_score=brier_score(probs, truth),
        pair_count=total,
        bins=bins,
    )
