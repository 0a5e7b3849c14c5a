"""The tracker on synthetic boxes: steady motion, crossings, occlusions, low-score detections."""

from __future__ import annotations

import numpy as np
import pytest

from faceprint.errors import UsageError
from faceprint.video.track import FaceTracker, TrackerConfig, iou_matrix


def box(cx: float, cy: float, size: float = 60.0) -> list[float]:
    return [cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]


def run(tracker: FaceTracker, frames: list[tuple[int, list[list[float]], list[float]]]) -> list[list[int]]:
    """Track ids per frame, in detection order (-1 for a detection left unassigned)."""
    out: list[list[int]] = []
    for index, boxes, scores in frames:
        assigned = {a.detection_index: a.track_id for a in tracker.update(index, np.array(boxes), np.array(scores))}
        out.append([assigned.get(i, -1) for i in range(len(boxes))])
    return out


def test_one_face_moving_keeps_one_id() -> None:
    frames = [(i * 5, [box(50 + 12 * i, 100)], [1.0]) for i in range(20)]
    ids = run(FaceTracker(), frames)
    assert {i[0] for i in ids} == {1}


def test_fast_face_without_overlap_is_followed_by_motion() -> None:
    # 70 px per sample with 60 px boxes: consecutive boxes never overlap; the motion model keeps up.
    frames = [(i * 5, [box(40 + 70 * i, 100)], [1.0]) for i in range(8)]
    assert {i[0] for i in run(FaceTracker(), frames)} == {1}


def test_two_faces_crossing_keep_their_ids() -> None:
    frames = []
    for i in range(21):
        a = box(40 + 20 * i, 100)  # left to right
        b = box(440 - 20 * i, 110)  # right to left
        frames.append((i * 5, [a, b], [1.0, 1.0]))
    ids = run(FaceTracker(), frames)
    assert ids[0] == [1, 2]
    assert all(frame_ids == [1, 2] for frame_ids in ids)


def test_crossing_with_occlusion_survives() -> None:
    """While the faces overlap only the front one is detected; afterwards both continue on their own path."""
    frames = []
    for i in range(21):
        a = box(40 + 20 * i, 100)
        b = box(440 - 20 * i, 100)
        if 8 <= i <= 12:  # b hidden behind a
            frames.append((i * 5, [a], [1.0]))
        else:
            frames.append((i * 5, [a, b], [1.0, 1.0]))
    ids = run(FaceTracker(TrackerConfig(max_lost_frames=40)), frames)
    assert all(frame_ids[0] == 1 for frame_ids in ids)
    assert all(frame_ids[1] == 2 for frame_ids in ids if len(frame_ids) == 2)


def test_short_occlusion_resumes_and_long_gap_starts_new_track() -> None:
    config = TrackerConfig(max_lost_frames=20)
    seen = [(i * 5, [box(100, 100)], [1.0]) for i in range(4)]  # frames 0-15
    short_gap = [(35, [box(100, 100)], [1.0])]  # 20 frames unseen: still in the buffer
    long_gap = [(60, [box(100, 100)], [1.0])]  # 25 frames: dropped, a new track
    ids = run(FaceTracker(config), seen + short_gap + long_gap)
    assert [i[0] for i in ids] == [1, 1, 1, 1, 1, 2]


def test_low_score_detection_extends_but_never_starts_a_track() -> None:
    tracker = FaceTracker(TrackerConfig(high_score=0.5, low_score=-0.5))
    ids = run(
        tracker,
        [
            (0, [box(100, 100)], [1.0]),
            (5, [box(104, 100), box(400, 300)], [0.1, 0.1]),  # the first continues; the second is nobody
            (10, [box(108, 100)], [0.9]),
            (15, [box(400, 300)], [-0.9]),  # below low_score: ignored
        ],
    )
    assert ids == [[1], [1, -1], [1], [-1]]


def test_distinct_faces_far_apart_get_distinct_ids() -> None:
    ids = run(FaceTracker(), [(0, [box(50, 50), box(400, 300)], [1.0, 1.0]), (5, [box(400, 300)], [1.0])])
    assert ids == [[1, 2], [2]]


def test_frames_must_come_in_order() -> None:
    tracker = FaceTracker()
    tracker.update(5, np.array([box(10, 10)]), np.array([1.0]))
    with pytest.raises(UsageError):
        tracker.update(5, np.array([box(10, 10)]), np.array([1.0]))


def test_iou_matrix() -> None:
    got = iou_matrix(np.array([[0, 0, 10, 10.0]]), np.array([[0, 0, 10, 10.0], [5, 5, 15, 15.0], [20, 20, 30, 30.0]]))
    np.testing.assert_allclose(got, [[1.0, 25 / 175, 0.0]])


@pytest.mark.parametrize(
    "kwargs",
    [{"low_score": 1.0, "high_score": 0.5}, {"match_iou": 1.5}, {"max_lost_frames": -1}, {"velocity_smoothing": 0}],
)
def test_bad_config(kwargs: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        TrackerConfig(**kwargs)  # type: ignore[arg-type]
