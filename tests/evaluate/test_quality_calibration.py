"""Quality-aware calibration fits on synthetic pairs whose genuine similarity falls with the head turn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from faceprint.compare import Comparator
from faceprint.errors import UsageError
from faceprint.evaluate.calibrate import (
    CalibrationFormatError,
    apply_calibration,
    fit_platt,
    load_calibration,
    save_calibration,
)
from faceprint.evaluate.metrics import calibration_quality
from faceprint.evaluate.quality_calibration import (
    DEFAULT_FEATURES,
    apply_quality_calibration,
    fit_calibration,
    fit_quality_calibration,
    make_quality_calibration_record,
    pair_feature_matrix,
)
from faceprint.models.catalog import builtin_specs
from faceprint.types import FaceQuality


def _face(yaw: float, *, stage: str = "hog@0", interocular: float = 50.0) -> FaceQuality:
    return FaceQuality(interocular, 1.0, stage, yaw, 0.0, 300.0, 0.5, 0.0)


def _pairs(seed: int, count: int = 3000) -> tuple[np.ndarray, np.ndarray, list[FaceQuality], list[FaceQuality]]:
    """Half frontal pairs, half frontal-vs-profile (found by MMOD), whose genuine similarity is lower."""
    rng = np.random.default_rng(seed)
    profile = rng.random(count) < 0.5
    same = rng.random(count) < 0.5
    genuine_mean = np.where(profile, 0.90, 0.96)
    impostor_mean = np.where(profile, 0.85, 0.83)
    spread = np.where(profile, 0.03, 0.02)
    similarities = np.where(same, genuine_mean, impostor_mean) + rng.normal(0, 1, count) * spread
    yaws = np.where(profile, rng.uniform(40, 80, count), rng.uniform(0, 25, count))
    qualities_a = [_face(float(rng.uniform(0, 15))) for _ in range(count)]
    qualities_b = [_face(float(y), stage="mmod" if p else "hog@0") for y, p in zip(yaws, profile, strict=True)]
    return similarities, same, qualities_a, qualities_b


def test_quality_fit_is_calibrated_where_platt_is_not() -> None:
    s, y, qa, qb = _pairs(0)
    calibration = fit_quality_calibration(s, y, qa, qb, dataset="synthetic")
    platt = fit_platt(s, y, dataset="synthetic")
    test_s, test_y, test_a, test_b = _pairs(1)
    profile = np.array([q.detector_stage == "mmod" for q in test_b])
    for mask in (profile, ~profile):
        quality_p = apply_quality_calibration(
            calibration,
            test_s[mask],
            [q for q, m in zip(test_a, mask, strict=True) if m],
            [q for q, m in zip(test_b, mask, strict=True) if m],
        )
        platt_p = apply_calibration(platt, test_s[mask])
        quality_ece = calibration_quality(quality_p, test_y[mask]).expected_calibration_error
        platt_ece = calibration_quality(platt_p, test_y[mask]).expected_calibration_error
        assert quality_ece < 0.03 < platt_ece
    assert calibration.quality is not None
    assert calibration.provenance["features"] == list(DEFAULT_FEATURES)
    assert calibration.quality.stages == ("hog@0", "mmod")
    assert set(calibration.quality.face_ranges) >= {"interocular_px", "abs_yaw_deg"}


def test_reference_pair_is_the_calibrations_own_sigmoid() -> None:
    s, y, qa, qb = _pairs(2)
    reference = {"fallback_stage": 0.0, "max_abs_yaw_deg": 30.0}
    calibration = fit_quality_calibration(s, y, qa, qb, dataset="synthetic", reference=reference)
    comparator = Comparator(builtin_specs()["dlib-resnet-v1"], calibration=calibration, threshold=0.9)
    frontal = _face(5.0)
    for similarity in (0.85, 0.9, 0.95):
        assert comparator.probability(similarity, frontal, frontal) == pytest.approx(
            comparator.probability(similarity), rel=1e-9
        )


def test_record_thresholds_and_file_round_trip(tmp_path: Path) -> None:
    s, y, qa, qb = _pairs(3)
    spec = builtin_specs()["dlib-resnet-v1"]
    record = make_quality_calibration_record(
        s, y, qa, qb, contract_id=spec.contract_id, dataset="synthetic", target_fars=(1e-1, 1e-2, 1e-4)
    )
    calibration = record.calibration
    assert record.threshold == pytest.approx(-calibration.intercept / calibration.slope)
    assert sorted(record.far_thresholds) == ["1e-1", "1e-2"]  # 1e-4 needs 10,000 impostor pairs
    assert record.far_thresholds["1e-2"] > record.far_thresholds["1e-1"]
    # The FAR holds on the fitted impostors, per kind of pair, once every pair's threshold follows its quality.
    comparator = Comparator(spec, calibration=calibration, threshold=record.threshold)
    profile = np.array([q.detector_stage == "mmod" for q in qb])
    for kind in (profile, ~profile):
        impostors = [i for i in np.flatnonzero(kind & ~y).tolist()]
        thresholds = [comparator.far_threshold("1e-2", qa[i], qb[i]) for i in impostors]
        accepted = [s[i] >= t for i, t in zip(impostors, thresholds, strict=True) if t is not None]
        assert len(accepted) == len(impostors)
        assert 0.002 < np.mean(accepted) < 0.03
    # Without qualities the comparator falls back to the model's fixed thresholds.
    assert comparator.far_threshold("1e-2", None, qb[0]) == spec.far_thresholds.get("1e-2")
    assert comparator.far_threshold("1e-4", qa[0], qb[0]) == spec.far_thresholds.get("1e-4")
    path = save_calibration(record, tmp_path / "calib.json")
    loaded = load_calibration(path, expected_contract_id=spec.contract_id)
    assert loaded.calibration == calibration and loaded.threshold == record.threshold


def test_a_non_monotone_or_unknown_file_is_refused(tmp_path: Path) -> None:
    s, y, qa, qb = _pairs(4, count=800)
    record = make_quality_calibration_record(s, y, qa, qb, contract_id="m:1", dataset="synthetic")
    data = json.loads(save_calibration(record, tmp_path / "calib.json").read_text())
    for copy in (data, data["calibration"]):
        copy["quality"]["terms"][1]["slope"] = -100.0
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(CalibrationFormatError, match="similarity"):
        load_calibration(tmp_path / "bad.json")
    for copy in (data, data["calibration"]):
        copy["quality"]["terms"][1]["feature"] = "shoe_size"
    (tmp_path / "unknown.json").write_text(json.dumps(data))
    with pytest.raises(CalibrationFormatError, match="shoe_size"):
        load_calibration(tmp_path / "unknown.json")


def test_fit_calibration_dispatch_and_bad_input() -> None:
    s, y, qa, qb = _pairs(5, count=400)
    assert fit_calibration(s, y, None, None, method="platt", dataset="d").method == "platt"
    assert fit_calibration(s, y, qa, qb, method="quality", dataset="d").method == "quality"
    with pytest.raises(UsageError, match="quality"):
        fit_calibration(s, y, None, None, method="quality", dataset="d")
    with pytest.raises(UsageError, match="platt or quality"):
        fit_calibration(s, y, qa, qb, method="isotonic", dataset="d")
    with pytest.raises(UsageError, match="unknown pair feature"):
        pair_feature_matrix(qa, qb, ["shoe_size"])
    with pytest.raises(UsageError, match="both classes"):
        fit_quality_calibration(s[:3], [True] * 3, qa[:3], qb[:3], dataset="d")


def test_pair_weights_pull_the_fit_towards_the_heavier_set() -> None:
    rng = np.random.default_rng(3)
    # Two sets whose similarity-only 50% points differ: 0.88 and 0.92.
    count = 2000
    first = rng.random(count) < 0.5
    second = rng.random(count) < 0.5
    s = np.r_[np.where(first, 0.93, 0.83), np.where(second, 0.97, 0.87)] + rng.normal(0, 0.02, 2 * count)
    y = np.r_[first, second]
    faces = [_face(5.0)] * (2 * count)

    def fifty(weights: np.ndarray | None) -> float:
        c = fit_quality_calibration(s, y, faces, faces, dataset="synthetic", features=(), pair_weights=weights)
        return -c.intercept / c.slope

    even = fifty(None)
    assert fifty(np.ones(2 * count)) == pytest.approx(even)
    assert fifty(np.r_[np.full(count, 4.0), np.ones(count)]) < even < fifty(np.r_[np.ones(count), np.full(count, 4.0)])
    with pytest.raises(UsageError, match="pair_weights"):
        fit_quality_calibration(s, y, faces, faces, dataset="synthetic", pair_weights=np.zeros(2 * count))
