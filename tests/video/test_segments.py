"""Segments from tracks, DeepVA fields, clustering with cannot-link in time, chip choice and crops."""

from __future__ import annotations

import base64
import io
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from faceprint.errors import UsageError
from faceprint.types import Detection, FaceQuality
from faceprint.video.pipeline import chip_score, crop_face
from faceprint.video.segments import (
    FaceTrack,
    Thumbnail,
    TrackDetection,
    TrackIdentity,
    build_segments,
    cluster_tracks,
)


def track(track_id: int, frames: list[int]) -> FaceTrack:
    return FaceTrack(track_id, tuple(TrackDetection(f, (10.0, 20.0, 50.0, 60.0), 1.0) for f in frames), (), None)


def who(key: str, label: str) -> TrackIdentity:
    return TrackIdentity(label=label, person_key=key, class_id=None, closest=None)


def test_tracks_of_one_person_merge_within_the_gap_and_split_beyond() -> None:
    tracks = [track(1, [0, 5, 10]), track(2, [20, 25]), track(3, [60, 65]), track(4, [0, 5])]
    people = [who("p:a", "Ada"), who("p:a", "Ada"), who("p:a", "Ada"), who("p:b", "Bob")]
    segments = build_segments(tracks, people, source="v.mp4", gap_frames=10, similarity_to={1: [0.9, 0.8]})
    got = [(s.identity.label, s.frame_start, s.frame_end, s.track_ids) for s in segments]
    assert got == [("Ada", 0, 25, (1, 2)), ("Bob", 0, 5, (4,)), ("Ada", 60, 65, (3,))]
    assert segments[0].mean_similarity == pytest.approx(0.85)
    assert segments[0].mean_distance == pytest.approx(np.mean([np.sqrt(2 - 1.8), np.sqrt(2 - 1.6)]))
    assert segments[2].mean_similarity is None


def test_deepva_segment_fields_and_exact_times() -> None:
    (segment,) = build_segments([track(1, [1000, 1036])], [who("p:a", "Ada")], source="v.mp4", gap_frames=50)
    out = segment.to_deepva(fps=Fraction(50), size_wh=(100, 200), top_k=3)
    assert (out["frame_start"], out["frame_end"]) == (1000, 1036)
    assert (out["time_start"], out["time_end"]) == (20.0, 20.72)
    assert (out["tc_start"], out["tc_end"]) == ("00:00:20:00", "00:00:20:36")
    assert out["detections"][0] == {
        "frame_index": 1000,
        "type": "face_bbox",
        "data": {"x": 0.1, "y": 0.1, "w": 0.4, "h": 0.2},
    }
    assert out["thumbnail"] is None and out["meta"]["closest_k_persons"] == []


def test_thumbnail_is_a_decodable_jpeg() -> None:
    image = np.zeros((300, 200, 3), np.uint8)
    image[:, :, 0] = 220
    thumb = Thumbnail.from_image(image, frame_index=7)
    decoded = Image.open(io.BytesIO(base64.b64decode(thumb.to_dict()["image"])))
    assert decoded.format == "JPEG" and max(decoded.size) == 160
    assert thumb.to_dict()["meta"]["frame_index"] == 7


def test_cannot_link_in_time_is_not_an_equivalence() -> None:
    """A overlaps B and B overlaps C: A and C (alike) still merge; B never joins either."""
    vectors = np.array([[1.0, 0.0], [0.999, 0.04], [0.998, 0.05]], np.float32)
    tracks = [track(1, [0, 10]), track(2, [5, 15]), track(3, [12, 20])]
    conflicts = np.array([[a.overlaps(b) and a is not b for b in tracks] for a in tracks])
    assert conflicts.tolist() == [[False, True, False], [True, False, True], [False, True, False]]
    assert cluster_tracks(vectors, cannot_link=conflicts, min_similarity=0.9) == [0, 1, 0]
    assert cluster_tracks(vectors, cannot_link=np.zeros((3, 3), bool), min_similarity=0.9) == [0, 0, 0]
    assert cluster_tracks(vectors, cannot_link=np.zeros((3, 3), bool), min_similarity=0.99999) == [0, 1, 2]


def test_cluster_tracks_checks_shapes() -> None:
    with pytest.raises(UsageError):
        cluster_tracks(np.eye(2, dtype=np.float32), cannot_link=np.zeros((3, 3), bool), min_similarity=0.5)
    assert cluster_tracks(np.zeros((0, 2), np.float32), cannot_link=np.zeros((0, 0), bool), min_similarity=0.5) == []


def quality(interocular: float, yaw: float, score: float) -> FaceQuality:
    return FaceQuality(interocular, score, "hog@1", yaw, 0.0, 100.0, 0.5, 0.0)


def test_chip_score_prefers_big_frontal_confident_faces() -> None:
    d = Detection((0, 0, 80, 80), 1.0, "dlib-hog")
    frontal = chip_score(d, quality(40, 0, 1.0))
    assert chip_score(d, quality(40, 60, 1.0)) < frontal  # turned away
    assert chip_score(d, quality(20, 0, 1.0)) < frontal  # smaller
    assert chip_score(d, quality(40, 0, -0.3)) < frontal  # weak detection
    assert chip_score(d, quality(90, 0, 1.0)) == chip_score(d, quality(60, 0, 1.0))  # saturates


def test_crop_face_keeps_the_face_and_moves_its_landmarks() -> None:
    image = np.arange(400 * 300 * 3, dtype=np.uint32).reshape(300, 400, 3).astype(np.uint8)
    det = Detection((100, 80, 140, 120), 1.0, "x", landmarks_xy=((110.0, 95.0), (130.0, 95.0)))
    crop = crop_face(image, det, padding=0.75, key="k")
    assert crop.image.shape == (100, 100, 3)
    assert crop.detection.bbox_xyxy == (30, 30, 70, 70)
    assert crop.detection.landmarks_xy == ((40.0, 45.0), (60.0, 45.0))
    np.testing.assert_array_equal(crop.image[30:70, 30:70], image[80:120, 100:140])
    edge = crop_face(image, Detection((0, 0, 40, 40), 1.0, "x"), padding=0.75, key="k")
    assert edge.image.shape == (70, 70, 3) and edge.detection.bbox_xyxy == (0, 0, 40, 40)
