from __future__ import annotations

import numpy as np
import pytest

from faceprint.align import ARCFACE_112, ARCFACE_112_POINTS, estimate_similarity, extract_aligned_face, warp_affine
from faceprint.errors import UsageError
from faceprint.types import Detection


def test_similarity_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, size=(5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = (scale * (rotation @ src.T)).T + shift
    matrix = estimate_similarity(src, dst)
    assert np.allclose(matrix[:, :2], scale * rotation) and np.allclose(matrix[:, 2], shift)


def test_similarity_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        estimate_similarity(np.zeros((1, 2)), np.zeros((1, 2)))


def test_warp_moves_a_dot_where_the_matrix_says() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    image[29:32, 39:42] = 255  # a bright dot centred on (40, 30)
    matrix = np.array([[0.5, 0.0, 10.0], [0.0, 0.5, 5.0]])  # (40, 30) -> (30, 20)
    out = warp_affine(image, matrix, (64, 64))
    y, x = np.unravel_index(np.argmax(out[..., 0]), out.shape[:2])
    assert abs(x - 30) <= 1 and abs(y - 20) <= 1


def test_arcface_chip_puts_the_eyes_on_the_template() -> None:
    image = np.zeros((300, 300, 3), np.uint8)
    # dlib 5-point order: two corners of one eye, two of the other, nose base.
    left_eye, right_eye = np.array([120.0, 140.0]), np.array([190.0, 136.0])
    for centre in (left_eye, right_eye):
        x, y = (round(v) for v in centre)
        image[y - 2 : y + 3, x - 2 : x + 3] = 255
    landmarks = (
        (right_eye[0] + 8, right_eye[1]),
        (right_eye[0] - 8, right_eye[1]),
        (left_eye[0] - 8, left_eye[1]),
        (left_eye[0] + 8, left_eye[1]),
        (155.0, 180.0),
    )
    detection = Detection(bbox_xyxy=(90, 90, 220, 220), score=1.0, detector="t", landmarks_xy=landmarks)
    chip = extract_aligned_face(image, detection, template=ARCFACE_112)
    assert chip.shape == (112, 112, 3)
    bright = np.argwhere(chip[..., 0] > 100)
    left_blob = bright[bright[:, 1] < 56].mean(axis=0)[::-1]
    right_blob = bright[bright[:, 1] >= 56].mean(axis=0)[::-1]
    assert np.allclose(left_blob, ARCFACE_112_POINTS[0], atol=1.5)
    assert np.allclose(right_blob, ARCFACE_112_POINTS[1], atol=1.5)


def test_alignment_needs_landmarks_and_a_known_template() -> None:
    image = np.zeros((50, 50, 3), np.uint8)
    detection = Detection(bbox_xyxy=(0, 0, 10, 10), score=1.0, detector="t")
    with pytest.raises(UsageError):
        extract_aligned_face(image, detection)
    with pytest.raises(UsageError):
        extract_aligned_face(image, detection.with_landmarks(((1.0, 1.0),) * 5), template="nope")
