from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from faceprint.errors import UsageError
from faceprint.evaluate.metrics import (
    area_under_roc,
    assign_folds,
    best_accuracy_threshold,
    brier_score,
    calibration_quality,
    equal_error_rate,
    expected_calibration_error,
    kfold_accuracy,
    metrics_at_threshold,
    metrics_from_decisions,
    reliability_bins,
    roc_curve,
    tar_at_far,
    tar_at_fars,
    threshold_at_far,
)

SEEDS = [0, 1, 2, 3]


def random_scores(
    seed: int, *, count: int = 400, decimals: int | None = 2
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Overlapping genuine/impostor similarities; rounding creates ties, the hard case for ROC code."""
    rng = np.random.default_rng(seed)
    labels = rng.random(count) < 0.4
    scores = rng.normal(np.where(labels, 0.6, 0.2), 0.2)
    if decimals is not None:
        scores = np.round(scores, decimals)
    return scores, labels


# --- hand-computed cases ---------------------------------------------------------------------------------


def test_roc_hand_case_with_a_tie() -> None:
    roc = roc_curve([0.9, 0.5, 0.5, 0.1], [True, True, False, False])
    assert roc.false_accept_rate.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert roc.true_accept_rate.tolist() == [0.0, 0.5, 1.0, 1.0]
    assert roc.min_similarity.tolist() == [math.inf, 0.9, 0.5, 0.1]
    assert roc.false_reject_rate.tolist() == [1.0, 0.5, 0.0, 0.0]
    assert (roc.genuine_count, roc.impostor_count) == (2, 2)
    # 4 genuine/impostor comparisons: 3 wins and one tie counted as half.
    assert roc.area_under_curve == pytest.approx(3.5 / 4)
    assert area_under_roc([0.9, 0.5, 0.5, 0.1], [True, True, False, False]) == pytest.approx(0.875)


def test_roc_arrays_are_read_only() -> None:
    roc = roc_curve([0.9, 0.1], [True, False])
    with pytest.raises(ValueError, match="read-only"):
        roc.true_accept_rate[0] = 1.0


def test_eer_exact_crossing() -> None:
    result = equal_error_rate([0.9, 0.8, 0.7, 0.6], [True, False, True, False])
    assert result.equal_error_rate == 0.5
    assert result.min_similarity == 0.8


def test_eer_interpolated_between_roc_points() -> None:
    # genuine 0.9, 0.5; impostor 0.7, 0.3, 0.2, 0.1. At >= 0.7: FAR 1/4, FRR 1/2; at >= 0.5: FAR 1/4, FRR 0.
    # Halfway along that segment FAR = FRR = 1/4.
    result = equal_error_rate([0.9, 0.5, 0.7, 0.3, 0.2, 0.1], [True, True, False, False, False, False])
    assert result.equal_error_rate == pytest.approx(0.25)
    assert result.min_similarity == 0.5


def test_tar_at_far_hand_case() -> None:
    impostors = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    genuine = [0.95, 0.85, 0.5]
    scores = impostors + genuine
    labels = [False] * 10 + [True] * 3

    at_10 = tar_at_far(scores, labels, target_far=0.1)
    assert at_10.false_accepts_allowed == 1
    assert at_10.true_accept_rate == pytest.approx(2 / 3)
    assert at_10.achieved_false_accept_rate == pytest.approx(0.1)
    assert at_10.min_similarity is not None and 0.8 < at_10.min_similarity < 0.85
    assert at_10.resolved and at_10.note is None

    at_50 = tar_at_far(scores, labels, target_far=0.5)
    assert at_50.false_accepts_allowed == 5
    assert at_50.min_similarity is not None and 0.4 < at_50.min_similarity < 0.5
    assert at_50.true_accept_rate == pytest.approx(1.0)
    assert at_50.achieved_false_accept_rate == pytest.approx(0.5)


def test_tar_at_far_is_honest_about_too_few_impostors() -> None:
    scores, labels = [0.9, 0.8] + [0.1] * 99, [True, True] + [False] * 99
    results = tar_at_fars(scores, labels)  # 1e-1, 1e-2, 1e-3
    assert [r.resolved for r in results] == [True, False, False]
    assert results[1].true_accept_rate is None
    assert results[1].min_similarity is None
    assert results[1].achieved_false_accept_rate is None
    assert results[1].note == "FAR 0.01 needs at least 100 impostor pairs, have 99"
    assert results[2].note == "FAR 0.001 needs at least 1000 impostor pairs, have 99"
    with pytest.raises(UsageError, match="needs at least 100 impostor pairs"):
        threshold_at_far(scores, labels, target_far=1e-2)


def test_far_exactly_resolvable_at_one_over_count() -> None:
    # 1000 impostors resolve FAR 1e-3 exactly (one false accept allowed), despite 1e-3 * 1000 rounding.
    rng = np.random.default_rng(7)
    scores = np.r_[rng.random(1000), [2.0]]
    labels = np.r_[np.zeros(1000, bool), [True]]
    result = tar_at_far(scores, labels, target_far=1e-3)
    assert result.false_accepts_allowed == 1
    assert result.achieved_false_accept_rate == pytest.approx(1e-3)


@pytest.mark.parametrize("target", [0.0, 1.0, -0.1, 2.0])
def test_target_far_must_be_a_rate(target: float) -> None:
    with pytest.raises(UsageError, match="target FAR"):
        tar_at_far([0.9, 0.1], [True, False], target_far=target)


def test_metrics_at_threshold_hand_case() -> None:
    m = metrics_at_threshold([0.9, 0.6, 0.4, 0.1, 0.7], [True, False, True, False, True], min_similarity=0.6)
    # accepted: 0.9 (genuine), 0.6 (impostor, >= is inclusive), 0.7 (genuine); rejected: 0.4 (genuine), 0.1
    assert (m.true_accept_count, m.false_accept_count, m.true_reject_count, m.false_reject_count) == (2, 1, 1, 1)
    assert m.accuracy == pytest.approx(3 / 5)
    assert m.precision == pytest.approx(2 / 3)
    assert m.recall == pytest.approx(2 / 3)
    assert m.specificity == pytest.approx(1 / 2)
    assert m.f1 == pytest.approx(2 / 3)
    assert m.pair_count == 5
    assert m.min_similarity == 0.6


def test_undefined_rates_are_none_not_zero() -> None:
    nothing_accepted = metrics_at_threshold([0.2, 0.1], [True, False], min_similarity=0.5)
    assert nothing_accepted.precision is None
    assert nothing_accepted.f1 == 0.0  # defined: 2*0 / (0 + 0 + 1)
    only_impostors = metrics_from_decisions([False, False], [False, False], min_similarity=0.5)
    assert only_impostors.recall is None
    assert only_impostors.f1 is None
    assert only_impostors.accuracy == 1.0
    only_genuine = metrics_from_decisions([True], [True], min_similarity=0.5)
    assert only_genuine.specificity is None


@pytest.mark.parametrize(
    ("scores", "labels", "threshold", "accuracy"),
    [
        ([0.9, 0.7, 0.3, 0.1], [True, True, False, False], 0.5, 1.0),  # midpoint of the gap
        ([0.9, 0.3, 0.7, 0.1], [True, True, False, False], 0.8, 0.75),  # highest of the equally good gaps
        ([0.1, 0.5, 0.6, 0.7], [True, False, False, False], None, 0.75),  # reject everything
        ([0.1, 0.2, 0.3, 0.9], [True, True, True, False], 0.1, 0.75),  # accept everything
    ],
)
def test_best_accuracy_threshold_hand_cases(
    scores: list[float], labels: list[bool], threshold: float | None, accuracy: float
) -> None:
    best = best_accuracy_threshold(scores, labels)
    assert best.accuracy == pytest.approx(accuracy)
    if threshold is None:
        assert best.min_similarity > max(scores)
    else:
        assert best.min_similarity == pytest.approx(threshold)
    assert metrics_at_threshold(scores, labels, min_similarity=best.min_similarity).accuracy == pytest.approx(accuracy)


def test_best_accuracy_midpoint_of_adjacent_floats_stays_on_the_right_side() -> None:
    low = 0.5
    high = float(np.nextafter(low, 1.0))
    best = best_accuracy_threshold([high, low], [True, False])
    assert best.accuracy == 1.0
    assert low < best.min_similarity <= high


def test_kfold_threshold_comes_from_the_other_folds() -> None:
    # Fold 0 ranks correctly, fold 1 is inverted: each fold is tested at the threshold the other one picks.
    scores = [0.9, 0.1, 0.2, 0.8]
    labels = [True, False, True, False]
    result = kfold_accuracy(scores, labels, folds=[0, 0, 1, 1])
    assert result.fold_ids == (0, 1)
    assert result.folds_source == "given"
    # Trained on fold 1 alone, rejecting everything is best: threshold just above 0.8, which gets fold 0 right.
    assert result.fold_min_similarities[0] > 0.8
    assert result.fold_accuracies[0] == 1.0
    # Trained on fold 0: threshold 0.5, which gets the inverted fold 1 entirely wrong.
    assert result.fold_min_similarities[1] == pytest.approx(0.5)
    assert result.fold_accuracies[1] == 0.0
    assert result.mean_accuracy == 0.5
    assert result.std_accuracy == pytest.approx(math.sqrt(0.5))  # sample std of (1, 0)
    assert result.standard_error == pytest.approx(math.sqrt(0.5) / math.sqrt(2))


def test_kfold_with_assigned_folds_on_separable_data() -> None:
    scores = [0.9, 0.8, 0.2, 0.1] * 10
    labels = [True, True, False, False] * 10
    result = kfold_accuracy(scores, labels)
    assert result.folds_source == "assigned"
    assert result.fold_count == 10
    assert result.fold_accuracies == (1.0,) * 10
    assert (result.mean_accuracy, result.std_accuracy) == (1.0, 0.0)


def test_kfold_refuses_a_training_split_with_one_class() -> None:
    with pytest.raises(UsageError, match="only one class"):
        kfold_accuracy([0.9, 0.8, 0.1], [True, True, False], folds=[0, 1, 2])


def test_kfold_refuses_a_single_fold_and_bad_fold_arrays() -> None:
    with pytest.raises(UsageError, match="at least 2 folds"):
        kfold_accuracy([0.9, 0.1], [True, False], folds=[0, 0])
    with pytest.raises(UsageError, match="folds must be"):
        kfold_accuracy([0.9, 0.1], [True, False], folds=[0.5, 1.5])


def test_assign_folds_is_stratified_contiguous_and_deterministic() -> None:
    labels = np.array([True] * 7 + [False] * 5)
    folds = assign_folds(labels, fold_count=3)
    assert folds[:7].tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert folds[7:].tolist() == [0, 0, 1, 1, 2]
    assert np.array_equal(folds, assign_folds(labels, fold_count=3))

    lfw_like = np.r_[np.ones(1100, bool), np.zeros(1100, bool)]
    folds = assign_folds(lfw_like)
    for fold in range(10):
        assert int(np.sum((folds == fold) & lfw_like)) == 110
        assert int(np.sum((folds == fold) & ~lfw_like)) == 110


def test_ece_and_brier_hand_case() -> None:
    probabilities = [0.05, 0.15, 0.15, 0.95]
    labels = [False, True, False, True]
    # bins: [0, 0.1): |0 - 0.05| * 1/4; [0.1, 0.2): |0.5 - 0.15| * 2/4; [0.9, 1]: |1 - 0.95| * 1/4
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.0125 + 0.175 + 0.0125)
    assert brier_score(probabilities, labels) == pytest.approx((0.05**2 + 0.85**2 + 0.15**2 + 0.05**2) / 4)
    bins = reliability_bins(probabilities, labels)
    assert len(bins) == 10
    assert [b.pair_count for b in bins] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 1]
    assert bins[2].mean_probability is None and bins[2].observed_same_rate is None
    assert bins[1].observed_same_rate == 0.5
    assert bins[9].lower_probability == pytest.approx(0.9)
    assert bins[9].upper_probability == 1.0


def test_bin_edges_belong_to_the_upper_bin_and_one_to_the_last() -> None:
    bins = reliability_bins([0.0, 0.5, 1.0], [False, True, True], bin_count=2)
    assert [b.pair_count for b in bins] == [1, 2]


def test_perfect_calibration_has_zero_ece() -> None:
    probabilities = [0.25] * 4 + [0.75] * 4
    labels = [True, False, False, False, True, True, True, False]
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: roc_curve([0.9, np.nan], [True, False]),
        lambda: roc_curve([0.9, 0.1], [True]),
        lambda: roc_curve([0.9, 0.1], [True, True]),
        lambda: roc_curve([], []),
        lambda: roc_curve([[0.9, 0.1]], [[True, False]]),
        lambda: roc_curve([0.9, 0.1], [1, 2]),
        lambda: brier_score([1.2, 0.1], [True, False]),
        lambda: calibration_quality([0.5], [True], bin_count=0),
    ],
)
def test_bad_inputs_raise_usage_errors(call: object) -> None:
    with pytest.raises(UsageError):
        call()  # type: ignore[operator]


def test_integer_labels_are_accepted() -> None:
    assert area_under_roc([0.9, 0.1], [1, 0]) == 1.0


# --- against scikit-learn on random scores -------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_and_auc_match_sklearn(seed: int) -> None:
    scores, labels = random_scores(seed)
    roc = roc_curve(scores, labels)
    fpr, tpr, thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(roc.false_accept_rate, fpr)
    np.testing.assert_allclose(roc.true_accept_rate, tpr)
    np.testing.assert_array_equal(roc.min_similarity, thresholds)
    assert area_under_roc(scores, labels) == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_tar_at_far_is_the_best_sklearn_roc_point_within_the_target(seed: int) -> None:
    scores, labels = random_scores(seed, count=3000)
    fpr, tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    for result in tar_at_fars(scores, labels):
        assert result.resolved
        assert result.true_accept_rate == pytest.approx(tpr[fpr <= result.target_false_accept_rate].max())
        assert result.achieved_false_accept_rate is not None
        assert result.achieved_false_accept_rate <= result.target_false_accept_rate
        assert result.min_similarity == threshold_at_far(scores, labels, target_far=result.target_false_accept_rate)
        # Lowering the threshold to the next impostor would break the target: it is the lowest compliant one.
        impostors = scores[~labels]
        next_impostor = impostors[impostors < result.min_similarity].max()
        assert np.mean(impostors >= next_impostor) > result.target_false_accept_rate


@pytest.mark.parametrize("seed", SEEDS)
def test_eer_is_where_far_meets_frr(seed: int) -> None:
    scores, labels = random_scores(seed, decimals=None)
    result = equal_error_rate(scores, labels)
    fpr, tpr, thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1.0 - tpr
    # The EER lies between FAR and FRR at the chosen threshold, which is the ROC point where they are closest.
    k = int(np.flatnonzero(thresholds == result.min_similarity)[0])
    assert min(fpr[k], fnr[k]) - 1e-12 <= result.equal_error_rate <= max(fpr[k], fnr[k]) + 1e-12
    assert abs(fpr[k] - fnr[k]) == pytest.approx(np.min(np.abs(fpr - fnr)))


@pytest.mark.parametrize("seed", SEEDS)
def test_threshold_metrics_match_sklearn(seed: int) -> None:
    scores, labels = random_scores(seed)
    threshold = 0.4
    predicted = scores >= threshold
    m = metrics_at_threshold(scores, labels, min_similarity=threshold)
    tn, fp, fn, tp = skm.confusion_matrix(labels, predicted).ravel()
    assert (m.true_accept_count, m.false_accept_count, m.true_reject_count, m.false_reject_count) == (tp, fp, tn, fn)
    assert m.accuracy == pytest.approx(skm.accuracy_score(labels, predicted))
    assert m.precision == pytest.approx(skm.precision_score(labels, predicted))
    assert m.recall == pytest.approx(skm.recall_score(labels, predicted))
    assert m.specificity == pytest.approx(skm.recall_score(labels, predicted, pos_label=False))
    assert m.f1 == pytest.approx(skm.f1_score(labels, predicted))


@pytest.mark.parametrize("seed", SEEDS)
def test_best_accuracy_is_the_brute_force_maximum(seed: int) -> None:
    scores, labels = random_scores(seed)
    candidates = np.r_[np.unique(scores), np.inf]
    brute = max(skm.accuracy_score(labels, scores >= t) for t in candidates)
    best = best_accuracy_threshold(scores, labels)
    assert best.accuracy == pytest.approx(brute)
    assert skm.accuracy_score(labels, scores >= best.min_similarity) == pytest.approx(brute)


@pytest.mark.parametrize("seed", SEEDS)
def test_brier_and_reliability_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    probabilities = rng.random(1000)
    labels = rng.random(1000) < probabilities**2  # deliberately miscalibrated
    assert brier_score(probabilities, labels) == pytest.approx(skm.brier_score_loss(labels, probabilities))
    observed, predicted = calibration_curve(labels, probabilities, n_bins=10, strategy="uniform")
    filled = [b for b in reliability_bins(probabilities, labels) if b.pair_count]
    np.testing.assert_allclose(np.array([b.observed_same_rate for b in filled], dtype=float), observed)
    np.testing.assert_allclose(np.array([b.mean_probability for b in filled], dtype=float), predicted)
    counts = np.array([b.pair_count for b in filled])
    ece = float(np.sum(counts / counts.sum() * np.abs(observed - predicted)))
    assert expected_calibration_error(probabilities, labels) == pytest.approx(ece)
    assert expected_calibration_error(probabilities, labels) > 0.05  # the miscalibration is seen
