from __future__ import annotations

import json

import numpy as np
import pytest

from faceprint.compare import cosine_similarity
from faceprint.errors import ContractMismatchError, FaceprintFormatError
from faceprint.types import INT16_SCALE, Detection, Faceprint


def _print(vector: np.ndarray, contract: str = "m:1") -> Faceprint:
    return Faceprint(vector=vector, model_id="m", contract_id=contract, package_version="1.2.3", model_options={"k": 1})


def test_json_round_trip_is_lossless() -> None:
    rng = np.random.default_rng(0)
    original = _print(rng.normal(size=128).astype(np.float32))
    restored = Faceprint.from_json(original.to_json())
    assert restored.same_as(original)
    assert restored.vector.dtype == np.float32
    assert np.array_equal(restored.vector.view(np.uint32), original.vector.view(np.uint32))


def test_json_carries_metadata() -> None:
    data = json.loads(_print(np.ones(3, np.float32)).to_json())
    assert data["format"] == "faceprint/1"
    assert data["model_id"] == "m" and data["contract_id"] == "m:1" and data["package_version"] == "1.2.3"
    assert data["model_options"] == {"k": 1} and data["dim"] == 3


def test_int16_similarity_error_below_1e_3() -> None:
    rng = np.random.default_rng(1)
    worst = 0.0
    for _ in range(500):
        a = _print(rng.normal(scale=0.1, size=128).astype(np.float32))
        b = _print((a.vector + rng.normal(scale=0.05, size=128)).astype(np.float32))
        qa, qb = Faceprint.from_int16(a.to_int16()), Faceprint.from_int16(b.to_int16())
        worst = max(worst, abs(cosine_similarity(a.vector, b.vector) - cosine_similarity(qa.vector, qb.vector)))
    print(f"max |cosine error| after int16 round trip: {worst:.2e}")
    assert worst < 1e-3
    assert INT16_SCALE == pytest.approx(1 / 32767)


def test_int16_keeps_metadata_and_is_compact() -> None:
    original = _print(np.linspace(-1, 1, 128, dtype=np.float32))
    blob = original.to_int16()
    restored = Faceprint.from_int16(blob)
    assert restored.contract_id == original.contract_id and restored.model_options == {"k": 1}
    assert np.linalg.norm(restored.vector) == pytest.approx(1.0, abs=1e-4)
    assert len(blob) < 128 * 2 + 300


@pytest.mark.parametrize(
    "blob",
    [b"", b"XXXX\x00\x00\x00\x00", b"FPI1\x05\x00\x00\x00{bad}", b'FPI1\x0b\x00\x00\x00{"dim": 4}'],
)
def test_int16_rejects_garbage(blob: bytes) -> None:
    with pytest.raises(FaceprintFormatError):
        Faceprint.from_int16(blob)


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"format": "other/1"}', '{"format": "faceprint/1", "dim": 3, "vector": [1, 2]}'],
)
def test_from_json_rejects_garbage(text: str) -> None:
    with pytest.raises(FaceprintFormatError):
        Faceprint.from_json(text)


def test_contract_mismatch_is_refused() -> None:
    a, b = _print(np.ones(4, np.float32), "m:1"), _print(np.ones(4, np.float32), "m:2")
    with pytest.raises(ContractMismatchError) as info:
        a.check_contract(b)
    assert info.value.code == "contract_mismatch"


def test_vector_is_read_only_and_validated() -> None:
    fp = _print(np.ones(4, np.float64))
    assert fp.vector.dtype == np.float32
    with pytest.raises(ValueError):
        fp.vector[0] = 2.0
    with pytest.raises(ValueError):
        _print(np.array([np.nan, 1.0], np.float32))
    with pytest.raises(ValueError):
        _print(np.ones((2, 2), np.float32))


def test_detection_validates_and_normalises() -> None:
    with pytest.raises(ValueError):
        Detection(bbox_xyxy=(10, 10, 5, 20), score=1.0, detector="x")
    d = Detection(bbox_xyxy=(-10.0, 50.0, 100.0, 150.0), score=1.0, detector="x")
    assert d.normalized_bbox((200, 100)) == (0.0, 0.5, 0.5, 1.0)
    assert d.with_landmarks(((1.0, 2.0),)).landmarks_xy == ((1.0, 2.0),)
