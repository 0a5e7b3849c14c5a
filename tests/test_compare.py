from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from faceprint.compare import (
    COMPARISON_FLAGS,
    Comparator,
    cosine_similarity,
    distance_from_similarity,
    probability_from_similarity,
    similarity_from_distance,
)
from faceprint.errors import ContractMismatchError
from faceprint.evaluate.calibrate import CalibrationFitError
from faceprint.evaluate.quality_calibration import check_monotone
from faceprint.models.catalog import builtin_specs
from faceprint.models.spec import Calibration, QualityModel, QualityTerm
from faceprint.types import Faceprint, FaceQuality


def test_similarity_and_distance_agree() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.normal(size=16), rng.normal(size=16)
        s = cosine_similarity(a, b)
        d = float(np.linalg.norm(a / np.linalg.norm(a) - b / np.linalg.norm(b)))
        assert distance_from_similarity(s) == pytest.approx(d, abs=1e-9)
        assert similarity_from_distance(d) == pytest.approx(s, abs=1e-9)
    assert cosine_similarity(np.zeros(3), np.ones(3)) == 0.0


def test_probability_is_monotone_bounded_and_stable() -> None:
    calibration = Calibration(slope=30.0, intercept=-25.0)
    values = [probability_from_similarity(calibration, s) for s in np.linspace(-1, 1, 201)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(b >= a for a, b in itertools.pairwise(values))
    huge = Calibration(slope=1e4, intercept=0.0)
    assert probability_from_similarity(huge, -1.0) == 0.0 and probability_from_similarity(huge, 1.0) == 1.0
    assert probability_from_similarity(calibration, 25 / 30) == pytest.approx(0.5)
    assert not math.isnan(probability_from_similarity(huge, 0.0))


def test_comparator_decision_and_contract() -> None:
    spec = builtin_specs()["dlib-resnet-v1"]
    comparator = Comparator(spec, threshold=0.5)
    v = np.ones(128, np.float32)
    fp = Faceprint(v, model_id=spec.id, contract_id=spec.contract_id, package_version="t")
    w = v.copy()
    w[:100] = -1
    other = Faceprint(w, model_id=spec.id, contract_id=spec.contract_id, package_version="t")
    assert comparator.compare(fp, fp).is_match and comparator.compare(fp, fp).similarity == pytest.approx(1.0)
    assert not comparator.compare(fp, other).is_match
    alien = Faceprint(v, model_id="x", contract_id="x:1", package_version="t")
    with pytest.raises(ContractMismatchError):
        comparator.compare(fp, alien)


# --- quality-aware calibration --------------------------------------------------------------------------


def _quality(*, yaw: float = 5.0, interocular: float = 60.0, stage: str = "hog@0", blur: float = 300.0) -> FaceQuality:
    return FaceQuality(interocular, 1.0, stage, yaw, 0.0, blur, 0.5, 0.0)


QUALITY_CALIBRATION = Calibration(
    slope=150.0,
    intercept=-136.5,  # p = 0.5 at s = 0.91 for the reference pair
    method="quality",
    quality=QualityModel(
        terms=(
            QualityTerm("fallback_stage", reference=0.0, low=0.0, high=1.0, slope=-70.0, intercept=65.5),
            QualityTerm("max_abs_yaw_deg", reference=30.0, low=30.0, high=50.0, slope=-0.5, intercept=0.45),
            QualityTerm("min_log2_interocular", reference=5.3, low=4.0, high=7.0, slope=8.0, intercept=-7.3),
        ),
        face_ranges={"interocular_px": (20.0, 250.0), "abs_yaw_deg": (0.0, 70.0), "blur_laplacian_var": (40.0, 3000.0)},
        stages=("hog@0", "hog@1", "hog@2", "mmod"),
    ),
)

GRID_QUALITIES = [
    _quality(yaw=yaw, interocular=io, stage=stage, blur=blur)
    for yaw in (0.0, 29.0, 40.0, 55.0, 89.0)
    for io in (8.0, 20.0, 45.0, 400.0)
    for stage in ("hog@0", "mmod", "assumed_crop")
    for blur in (5.0, 500.0)
]


def test_quality_probability_is_monotone_in_similarity_for_any_qualities() -> None:
    # A dense grid stands in for a property test: every pair of grid qualities, 401 similarities each.
    comparator = Comparator(builtin_specs()["dlib-resnet-v1"], calibration=QUALITY_CALIBRATION, threshold=0.91)
    similarities = np.linspace(-1.0, 1.0, 401)
    rng = np.random.default_rng(0)
    picks = rng.choice(len(GRID_QUALITIES), size=(300, 2))
    for i, j in [*picks.tolist(), (0, 0), (len(GRID_QUALITIES) - 1, 0)]:
        a, b = GRID_QUALITIES[i], GRID_QUALITIES[j]
        values = [comparator.probability(float(s), a, b) for s in similarities]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert all(later >= earlier for earlier, later in itertools.pairwise(values)), (a, b)
        # Symmetric in the two faces.
        assert comparator.probability(0.9, a, b) == comparator.probability(0.9, b, a)


def test_check_monotone_rejects_a_slope_that_turns_negative() -> None:
    bad = Calibration(
        slope=10.0,
        intercept=-5.0,
        method="quality",
        quality=QualityModel(terms=(QualityTerm("max_abs_yaw_deg", 0.0, 0.0, 90.0, slope=-1.0, intercept=0.0),)),
    )
    with pytest.raises(CalibrationFitError, match="similarity"):
        check_monotone(bad)
    assert check_monotone(QUALITY_CALIBRATION) > 0


def _faceprints(
    quality_a: FaceQuality | None, quality_b: FaceQuality | None, angle: float
) -> tuple[Faceprint, Faceprint]:
    spec = builtin_specs()["dlib-resnet-v1"]
    u = np.zeros(128, np.float32)
    u[0] = 1.0
    v = np.zeros(128, np.float32)
    v[0], v[1] = math.cos(angle), math.sin(angle)
    make = lambda vector, quality: Faceprint(  # noqa: E731
        vector, model_id=spec.id, contract_id=spec.contract_id, package_version="t", quality=quality
    )
    return make(u, quality_a), make(v, quality_b)


def test_quality_aware_threshold_is_the_50_percent_point() -> None:
    comparator = Comparator(builtin_specs()["dlib-resnet-v1"], calibration=QUALITY_CALIBRATION, threshold=0.91)
    frontal, profile = _quality(yaw=5.0, interocular=2**5.3), _quality(yaw=60.0, interocular=2**5.3, stage="mmod")
    assert comparator.threshold_for(frontal, frontal) == pytest.approx(0.91)
    hard = comparator.threshold_for(profile, frontal)
    assert hard < 0.91  # a profile pair needs less similarity for the same confidence
    assert comparator.probability(hard, profile, frontal) == pytest.approx(0.5)
    # A FAR threshold moves with the pair too, to the same probability level.
    strict = comparator.threshold_for(profile, frontal, min_similarity=0.93)
    level = comparator.probability(0.93, frontal, frontal)
    assert comparator.probability(strict, profile, frontal) == pytest.approx(level)
    for angle in np.linspace(0.2, 0.6, 41):
        a, b = _faceprints(profile, frontal, float(angle))
        result = comparator.compare(a, b)
        assert result.is_match == (result.probability >= 0.5 - 1e-9)
        assert result.threshold == pytest.approx(hard)


@pytest.mark.parametrize(
    ("quality_a", "quality_b", "flags"),
    [
        (_quality(), _quality(), ()),
        (_quality(interocular=12.0), _quality(), ("low_quality",)),
        (_quality(blur=10.0), _quality(), ("low_quality",)),
        (_quality(stage="low_confidence"), _quality(), ("low_quality",)),
        (_quality(stage="assumed_crop"), _quality(), ("low_quality",)),
        (_quality(yaw=85.0), _quality(), ("out_of_range",)),
        (_quality(interocular=12.0, yaw=85.0), _quality(), ("low_quality", "out_of_range")),
        (_quality(interocular=300.0, blur=9000.0, yaw=0.0), _quality(), ()),  # bigger and sharper is not worse
        (None, _quality(), ("quality_unknown",)),
    ],
)
def test_flags(quality_a: FaceQuality | None, quality_b: FaceQuality | None, flags: tuple[str, ...]) -> None:
    comparator = Comparator(builtin_specs()["dlib-resnet-v1"], calibration=QUALITY_CALIBRATION, threshold=0.91)
    a, b = _faceprints(quality_a, quality_b, 0.3)
    result = comparator.compare(a, b)
    assert result.flags == flags
    assert set(result.flags) <= set(COMPARISON_FLAGS)
    assert result.to_dict()["flags"] == list(flags)
    # A flagged pair still gets its probability.
    assert 0.0 <= result.probability <= 1.0


def test_unknown_quality_uses_the_reference_sigmoid_and_platt_has_no_flags() -> None:
    spec = builtin_specs()["dlib-resnet-v1"]
    comparator = Comparator(spec, calibration=QUALITY_CALIBRATION, threshold=0.91)
    a, b = _faceprints(None, None, 0.3)
    result = comparator.compare(a, b)
    assert result.probability == pytest.approx(probability_from_similarity(QUALITY_CALIBRATION, result.similarity))
    assert result.threshold == 0.91
    platt = Comparator(spec, calibration=Calibration(slope=150.0, intercept=-136.5), threshold=0.91)
    a, b = _faceprints(_quality(interocular=5.0), _quality(), 0.3)
    assert platt.compare(a, b).flags == () and platt.compare(a, b).threshold == 0.91


def test_quality_calibration_round_trips_through_its_dict() -> None:
    assert Calibration.from_dict(QUALITY_CALIBRATION.to_dict()) == QUALITY_CALIBRATION
    with pytest.raises(ValueError, match="quality model"):
        Calibration(slope=1.0, intercept=0.0, method="quality")


def test_min_hog_score_counts_a_face_found_past_the_hog_passes_as_zero() -> None:
    from faceprint.compare import PAIR_FEATURES

    frontal = FaceQuality(60.0, 1.4, "hog@0", 3.0, 0.0, 300.0, 0.5, 0.0)
    turned = FaceQuality(60.0, 0.3, "hog@1", 40.0, 0.0, 300.0, 0.5, 0.0)
    profile = FaceQuality(60.0, 1.05, "mmod", 70.0, 0.0, 300.0, 0.5, 0.0)  # an MMOD confidence, not a HOG margin
    feature = PAIR_FEATURES["min_hog_score"]
    assert feature(frontal, frontal) == 1.4
    assert feature(frontal, turned) == feature(turned, frontal) == 0.3
    assert feature(frontal, profile) == 0.0


def test_the_shipped_calibration_is_monotone_in_similarity_for_any_qualities() -> None:
    spec = builtin_specs()["dlib-resnet-v1"]
    assert spec.calibration is not None and spec.calibration.quality is not None
    assert check_monotone(spec.calibration) > 0
    comparator = Comparator(spec)
    qualities = [
        FaceQuality(io, score, stage, yaw, 0.0, 300.0, 0.5, 0.0)
        for io in (10.0, 60.0)
        for score in (-0.5, 0.0, 0.4, 1.2, 3.0)
        for stage in ("hog@0", "hog@2", "mmod", "assumed_crop")
        for yaw in (0.0, 35.0, 80.0)
    ]
    similarities = np.linspace(-1.0, 1.0, 201)
    rng = np.random.default_rng(1)
    for i, j in rng.choice(len(qualities), size=(200, 2)).tolist():
        a, b = qualities[i], qualities[j]
        values = [comparator.probability(float(s), a, b) for s in similarities]
        assert all(later >= earlier for earlier, later in itertools.pairwise(values)), (a, b)
        assert comparator.probability(0.9, a, b) == comparator.probability(0.9, b, a)
