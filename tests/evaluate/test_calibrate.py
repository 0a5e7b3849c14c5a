from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.linear_model import LogisticRegression

from faceprint.errors import ContractMismatchError, UsageError
from faceprint.evaluate.calibrate import (
    CalibrationFitError,
    CalibrationFormatError,
    CalibrationRecord,
    apply_calibration,
    far_key,
    fit_platt,
    load_calibration,
    make_calibration_record,
    save_calibration,
    sigmoid,
)
from faceprint.models.spec import Calibration


def logistic_data(
    slope: float, intercept: float, *, count: int, seed: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    rng = np.random.default_rng(seed)
    scores = rng.uniform(-1.0, 1.0, count)
    labels = rng.random(count) < sigmoid(slope * scores + intercept)
    return scores, labels


@pytest.mark.parametrize(("slope", "intercept"), [(8.0, -2.0), (15.0, -6.0), (3.0, 0.5)])
def test_recovers_known_parameters(slope: float, intercept: float) -> None:
    scores, labels = logistic_data(slope, intercept, count=40_000, seed=11)
    fit = fit_platt(scores, labels, dataset="synthetic", target_smoothing=False)
    # Standard errors at n = 40k are a few percent of these values; 10 % leaves room without going blind.
    assert fit.slope == pytest.approx(slope, rel=0.1)
    assert fit.intercept == pytest.approx(intercept, rel=0.1, abs=0.1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unsmoothed_fit_is_the_logistic_regression_mle(seed: int) -> None:
    scores, labels = logistic_data(6.0, -1.0, count=3000, seed=seed)
    fit = fit_platt(scores, labels, dataset="synthetic", target_smoothing=False)
    reference = LogisticRegression(C=1e12, tol=1e-12, max_iter=10_000).fit(scores[:, None], labels)
    assert fit.slope == pytest.approx(float(reference.coef_[0, 0]), rel=1e-5)
    assert fit.intercept == pytest.approx(float(reference.intercept_[0]), rel=1e-5, abs=1e-6)


def test_smoothing_keeps_separable_data_finite_and_plain_mle_refuses() -> None:
    scores = np.r_[np.linspace(0.5, 0.9, 50), np.linspace(-0.2, 0.3, 50)]
    labels = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    fit = fit_platt(scores, labels, dataset="separable")
    assert np.isfinite(fit.slope) and fit.slope > 0
    probabilities = apply_calibration(fit, [0.9, 0.4, -0.2])
    assert probabilities[0] > 0.95 and probabilities[2] < 0.05
    # Platt's targets cap the confidence: never exactly 0 or 1 on the training range.
    assert 0.0 < probabilities.min() and probabilities.max() < 1.0
    with pytest.raises(CalibrationFitError, match="do not overlap"):
        fit_platt(scores, labels, dataset="separable", target_smoothing=False)


def test_reversed_scores_are_refused() -> None:
    scores, labels = logistic_data(-5.0, 0.0, count=2000, seed=3)
    with pytest.raises(CalibrationFitError, match="not positive"):
        fit_platt(scores, labels, dataset="reversed")


def test_one_class_is_refused() -> None:
    with pytest.raises(UsageError, match="both classes"):
        fit_platt([0.1, 0.2], [True, True], dataset="x")


def test_probabilities_are_monotone_and_within_unit_interval() -> None:
    scores, labels = logistic_data(10.0, -3.0, count=2000, seed=5)
    fit = fit_platt(scores, labels, dataset="synthetic")
    grid = np.linspace(-50.0, 50.0, 10_001)  # far outside the data: the sigmoid must not overflow
    probabilities = apply_calibration(fit, grid)
    assert probabilities.shape == grid.shape
    assert np.all((probabilities >= 0.0) & (probabilities <= 1.0))
    assert np.all(np.diff(probabilities) >= 0.0)
    assert probabilities[0] < 1e-100 and probabilities[-1] == 1.0
    assert not np.any(np.isnan(probabilities))


def test_apply_calibration_keeps_shape_and_matches_formula() -> None:
    calibration = Calibration(slope=12.0, intercept=-6.0)
    similarities = np.array([[0.0, 0.5], [0.25, 1.0]])
    expected = 1.0 / (1.0 + np.exp(-(12.0 * similarities - 6.0)))
    np.testing.assert_allclose(apply_calibration(calibration, similarities), expected)


def test_provenance_records_where_the_fit_comes_from() -> None:
    scores, labels = logistic_data(8.0, -2.0, count=500, seed=2)
    fit = fit_platt(scores, labels, dataset="lfw-view1/pairsDevTrain", fitted_on=dt.date(2024, 5, 17))
    provenance = fit.provenance
    assert provenance["dataset"] == "lfw-view1/pairsDevTrain"
    assert provenance["genuine_pairs"] == int(labels.sum())
    assert provenance["impostor_pairs"] == int((~labels).sum())
    assert provenance["fitted_on"] == "2024-05-17"
    assert provenance["method"] == "platt-newton"
    assert provenance["target_smoothing"] is True
    assert provenance["similarity_range"] == [float(scores.min()), float(scores.max())]
    assert fit.method == "platt"


@pytest.mark.parametrize(("far", "key"), [(1e-1, "1e-1"), (1e-2, "1e-2"), (1e-3, "1e-3"), (5e-4, "5e-4")])
def test_far_key(far: float, key: str) -> None:
    assert far_key(far) == key


def test_calibration_record_round_trip(tmp_path: Path) -> None:
    scores, labels = logistic_data(8.0, -2.0, count=2200, seed=9)
    record = make_calibration_record(
        scores, labels, contract_id="dlib-resnet-v1:abc", dataset="synthetic", fitted_on=dt.date(2024, 1, 2)
    )
    assert sorted(record.far_thresholds) == ["1e-1", "1e-2", "1e-3"]  # ~1400 impostors resolve 1e-3
    # A stricter FAR needs a higher minimum similarity.
    assert record.far_thresholds["1e-3"] > record.far_thresholds["1e-2"] > record.far_thresholds["1e-1"]

    path = save_calibration(record, tmp_path / "calib.json")

    data = json.loads(path.read_text())
    assert {"slope", "intercept", "method", "provenance", "contract_id", "threshold", "far_thresholds"} <= set(data)
    assert data["contract_id"] == "dlib-resnet-v1:abc"
    loaded = load_calibration(path, expected_contract_id="dlib-resnet-v1:abc")
    assert loaded == record
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["calib.json"]  # no temp file left behind


def test_record_leaves_out_unresolvable_far_thresholds() -> None:
    scores, labels = logistic_data(8.0, -2.0, count=300, seed=4)
    record = make_calibration_record(scores, labels, contract_id="m:1", dataset="small")
    assert sorted(record.far_thresholds) == ["1e-1", "1e-2"]


def test_load_refuses_another_contract(tmp_path: Path) -> None:
    record = CalibrationRecord(Calibration(slope=10.0, intercept=-4.0), contract_id="a:1", threshold=0.4)
    path = save_calibration(record, tmp_path / "calib.json")
    with pytest.raises(ContractMismatchError, match="'a:1'"):
        load_calibration(path, expected_contract_id="b:2")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not a JSON"),
        ("[1, 2]", "JSON object"),
        ('{"slope": 1}', "format"),
        ('{"format": "faceprint-calibration/1", "slope": 1, "intercept": 0, "threshold": 0.5}', "contract_id"),
        (
            '{"format": "faceprint-calibration/1", "slope": "steep", "intercept": 0, "contract_id": "a",'
            ' "threshold": 0.5}',
            "malformed",
        ),
        (
            '{"format": "faceprint-calibration/1", "method": "isotonic", "slope": 1, "intercept": 0,'
            ' "contract_id": "a", "threshold": 0.5}',
            "isotonic",
        ),
    ],
)
def test_load_refuses_malformed_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "calib.json"
    path.write_text(content)
    with pytest.raises(CalibrationFormatError, match=message):
        load_calibration(path)


def test_failed_save_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "calib.json"
    path.write_text("old")
    bad = CalibrationRecord(Calibration(slope=float("nan"), intercept=0.0), contract_id="a", threshold=0.5)
    with pytest.raises(ValueError, match="not JSON compliant"):
        save_calibration(bad, path)
    assert path.read_text() == "old"
