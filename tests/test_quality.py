"""Face quality: stages from detector names, pose from synthetic 5-point heads, blur and exposure on chips."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from faceprint.quality import (
    EYE_CORNER_DEPTH_RATIO,
    NOSE_DEPTH_RATIO,
    NOSE_DROP_RATIO,
    STAGES,
    assess_face,
    blur_laplacian_variance,
    detector_stage,
    estimate_pose,
)
from faceprint.types import Detection, FaceQuality

BOX = (0.0, 0.0, 200.0, 200.0)


def _head(yaw_deg: float, pitch_deg: float = 0.0, roll_deg: float = 0.0, scale: float = 60.0) -> np.ndarray:
    """5 dlib-order points of the rigid head model, rotated and projected orthographically."""
    e = scale / 2.0
    d, h = NOSE_DEPTH_RATIO * e, NOSE_DROP_RATIO * 2.0 * e
    # x right, y down, z toward the camera. Eye corners 0.25 e either side of each eye centre, the outer
    # corner set back (and the inner forward) so that the eye centre stays in the z = 0 plane.
    z = EYE_CORNER_DEPTH_RATIO * 0.5 * e / 2.0
    points = np.array([[1.25 * e, 0, -z], [0.75 * e, 0, z], [-1.25 * e, 0, -z], [-0.75 * e, 0, z], [0, h, d]])
    yaw, pitch, roll = (math.radians(v) for v in (yaw_deg, pitch_deg, roll_deg))
    rot_y = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    # Chin up (positive pitch) lifts the nose base toward the eye line: y' = y cos - z sin.
    rot_x = np.array([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]])
    rotated = points @ rot_x.T @ rot_y.T
    xy = rotated[:, :2]
    rot_z = np.array([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
    return xy @ rot_z.T + 100.0


@pytest.mark.parametrize(
    ("name", "flags", "stage"),
    [
        ("dlib-hog@0", (), "hog@0"),
        ("dlib-hog@1", (), "hog@1"),
        ("dlib-hog@2", (), "hog@2"),
        ("dlib-hog@2-0.5", ("low_confidence",), "low_confidence"),
        ("dlib-hog@2-0.5", (), "low_confidence"),
        ("dlib-mmod@1", (), "mmod"),
        ("dlib-mmod-onnx@1", (), "mmod"),
        ("center-crop", ("assumed_center_crop",), "assumed_crop"),
        ("something-else", (), "other"),
    ],
)
def test_detector_stage(name: str, flags: tuple[str, ...], stage: str) -> None:
    detection = Detection(BOX, 1.0, name, flags=flags)
    assert detector_stage(detection) == stage
    assert stage in STAGES


@pytest.mark.parametrize("roll", [-25.0, 0.0, 30.0])
@pytest.mark.parametrize(
    ("yaw", "pitch"), [(-60.0, 0.0), (-30.0, 0.0), (0.0, 0.0), (15.0, 0.0), (70.0, 0.0), (0.0, -20.0), (0.0, 25.0)]
)
def test_pose_recovers_the_head_model(yaw: float, pitch: float, roll: float) -> None:
    estimated_yaw, estimated_pitch = estimate_pose(_head(yaw, pitch, roll))
    assert estimated_yaw == pytest.approx(yaw, abs=0.01)
    assert estimated_pitch == pytest.approx(pitch, abs=0.01)


def test_pose_with_both_angles_is_approximate() -> None:
    # Pitch and yaw together are first order only (a pitched-down nose base nears the eye plane).
    estimated_yaw, estimated_pitch = estimate_pose(_head(30.0, 10.0))
    assert estimated_yaw == pytest.approx(30.0, abs=5.0)
    assert estimated_pitch == pytest.approx(10.0, abs=5.0)


def test_pose_sign_and_order() -> None:
    yaws = [estimate_pose(_head(y))[0] for y in np.linspace(-70, 70, 29)]
    assert all(b > a for a, b in itertools.pairwise(yaws))
    # The eye pair order in dlib's 5 points does not matter.
    points = _head(20.0)
    swapped = points[[2, 3, 0, 1, 4]]
    assert estimate_pose(swapped) == pytest.approx(estimate_pose(points))
    with pytest.raises(ValueError, match="5"):
        estimate_pose(points[:4])


def test_assess_face_measures_size_blur_and_exposure() -> None:
    rng = np.random.default_rng(0)
    landmarks = tuple((float(x), float(y)) for x, y in _head(0.0, scale=42.0))
    detection = Detection(BOX, 0.8, "dlib-hog@1", landmarks_xy=landmarks)
    image = np.zeros((300, 300, 3), np.uint8)
    flat = np.full((150, 150, 3), 128, np.uint8)
    noisy = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)
    dark = np.zeros((150, 150, 3), np.uint8)
    flat_q, noisy_q, dark_q = (assess_face(image, detection, chip) for chip in (flat, noisy, dark))
    assert flat_q.interocular_px == pytest.approx(42.0)
    assert flat_q.detector_score == 0.8 and flat_q.detector_stage == "hog@1"
    assert flat_q.blur_laplacian_var == 0.0 < noisy_q.blur_laplacian_var
    assert flat_q.exposure_mean == pytest.approx(128 / 255, abs=1e-3)
    assert flat_q.exposure_clipped_fraction == 0.0 and dark_q.exposure_clipped_fraction == 1.0
    assert dark_q.exposure_mean == 0.0
    assert isinstance(flat_q, FaceQuality)
    assert FaceQuality.from_dict(flat_q.to_dict()).detector_stage == "hog@1"


def test_assess_face_without_landmarks_falls_back_to_the_box() -> None:
    detection = Detection((10.0, 10.0, 110.0, 130.0), 0.0, "center-crop", flags=("assumed_center_crop",))
    quality = assess_face(np.zeros((200, 200, 3), np.uint8), detection, np.full((112, 112, 3), 90, np.uint8))
    assert quality.interocular_px == pytest.approx(40.0)
    assert (quality.yaw_deg, quality.pitch_deg, quality.detector_stage) == (0.0, 0.0, "assumed_crop")


def test_blur_falls_as_the_chip_is_smoothed() -> None:
    rng = np.random.default_rng(1)
    grey = rng.normal(128, 40, (90, 90)).astype(np.float32)
    values = [blur_laplacian_variance(grey)]
    for _ in range(3):
        grey = (grey + np.roll(grey, 1, 0) + np.roll(grey, 1, 1) + np.roll(grey, (1, 1), (0, 1))) / 4.0
        values.append(blur_laplacian_variance(grey))
    assert all(b < a for a, b in itertools.pairwise(values))
    assert blur_laplacian_variance(np.zeros((2, 2), np.float32)) == 0.0
