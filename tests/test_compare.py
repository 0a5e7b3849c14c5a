from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from faceprint.compare import (
    Comparator,
    cosine_similarity,
    distance_from_similarity,
    probability_from_similarity,
    similarity_from_distance,
)
from faceprint.errors import ContractMismatchError
from faceprint.models.catalog import builtin_specs
from faceprint.models.spec import Calibration
from faceprint.types import Faceprint


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
