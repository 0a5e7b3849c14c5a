"""A small ByteTrack-class face tracker: IoU on motion-predicted boxes, two-stage association, lost buffer.

Per sampled frame (:meth:`FaceTracker.update`), in the spirit of ByteTrack (Zhang et al., 2022):

1. every live track predicts its box at this frame with a constant-velocity model (velocity smoothed over
   its recent matches), so two faces that cross keep their own paths;
2. *high-score* detections are matched to all tracks (also the lost ones) by IoU with the predicted boxes;
3. *low-score* detections (a blurred or half-hidden face) are matched only to the tracks still unmatched
   that were seen last time, with a stricter IoU: they extend a track but never start one;
4. high-score detections still unmatched are matched by centre distance (relative to the face size) to
   tracks still unmatched: at a few samples a second a fast face may not overlap its own previous box;
5. unmatched high-score detections start new tracks; unmatched tracks become *lost* and are kept for
   ``max_lost_frames`` frames (a short occlusion), then dropped.

Matching is greedy on the best pair first (faces in a frame are few; the Hungarian optimum differs only
in rare ties). Pure numpy, no state outside the tracker object.

Example:
    >>> tracker = FaceTracker(TrackerConfig(max_lost_frames=10))
    >>> boxes = np.array([[10, 10, 50, 50]], np.float64)
    >>> [a.track_id for a in tracker.update(0, boxes, np.array([1.0]))]
    [1]
    >>> [a.track_id for a in tracker.update(5, boxes + 8, np.array([1.0]))]
    [1]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from faceprint.errors import UsageError

Boxes = npt.NDArray[np.float64]
"""``(n, 4)`` boxes ``(left, top, right, bottom)`` in pixels."""


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """Tracker settings; frame counts are in frame indices of the video (not in samples)."""

    high_score: float = 0.3
    """Detections at or above this score may start tracks (stage 1); below it they only extend (stage 2)."""
    low_score: float = -1.0
    """Detections below this are ignored."""
    match_iou: float = 0.1
    """Least IoU between a predicted track box and a high-score detection."""
    low_match_iou: float = 0.4
    """Least IoU for a low-score detection (stricter: it is less likely a face)."""
    max_center_distance: float = 1.5
    """Stage 4: largest centre distance, in face widths, between a predicted box and a detection."""
    max_size_ratio: float = 2.0
    """Stage 4: the larger of the two box widths over the smaller, at most."""
    max_lost_frames: int = 25
    """Frames a track survives without a detection (short occlusions, missed detections)."""
    velocity_smoothing: float = 0.6
    """Weight of the newest velocity estimate (0-1]."""

    def __post_init__(self) -> None:
        if self.low_score > self.high_score:
            raise UsageError("low_score must not exceed high_score")
        if not 0.0 <= self.match_iou <= 1.0 or not 0.0 <= self.low_match_iou <= 1.0:
            raise UsageError("IoU thresholds must be within 0-1")
        if self.max_lost_frames < 0:
            raise UsageError("max_lost_frames must be non-negative")
        if not 0.0 < self.velocity_smoothing <= 1.0:
            raise UsageError("velocity_smoothing must be in (0, 1]")
        if self.max_size_ratio < 1.0 or self.max_center_distance < 0.0:
            raise UsageError("max_size_ratio must be at least 1 and max_center_distance non-negative")


@dataclass(frozen=True, slots=True)
class TrackAssignment:
    """Detection ``detection_index`` of this frame belongs to track ``track_id``."""

    detection_index: int
    track_id: int
    is_new: bool


@dataclass(slots=True)
class _Track:
    track_id: int
    box: Boxes  # (4,), at last_frame
    velocity: Boxes  # (4,), pixels per frame
    last_frame: int
    hits: int

    def predict(self, frame_index: int) -> Boxes:
        predicted = self.box + self.velocity * float(frame_index - self.last_frame)
        width = max(predicted[2] - predicted[0], 1.0)
        height = max(predicted[3] - predicted[1], 1.0)
        centre = (predicted[:2] + predicted[2:]) / 2.0
        return np.array([centre[0] - width / 2, centre[1] - height / 2, centre[0] + width / 2, centre[1] + height / 2])


def iou_matrix(a: Boxes, b: Boxes) -> Boxes:
    """Pairwise intersection over union of ``(n, 4)`` and ``(m, 4)`` boxes.

    Example:
        >>> iou_matrix(np.array([[0, 0, 10, 10.0]]), np.array([[5, 0, 15, 10.0], [20, 20, 30, 30.0]]))
        array([[0.33333333, 0.        ]])
    """
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 2], b[None, :, 2])
    bottom = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _greedy(score: Boxes, minimum: float, *, higher_is_better: bool = True) -> list[tuple[int, int]]:
    """Pairs (row, col) picked best-first while the score passes ``minimum`` (or stays under it)."""
    pairs: list[tuple[int, int]] = []
    if score.size == 0:
        return pairs
    work = score.astype(np.float64).copy()
    fill = -np.inf if higher_is_better else np.inf
    while True:
        flat = int(np.argmax(work)) if higher_is_better else int(np.argmin(work))
        row, col = divmod(flat, work.shape[1])
        value = work[row, col]
        if (higher_is_better and not value >= minimum) or (not higher_is_better and not value <= minimum):
            return pairs
        pairs.append((row, col))
        work[row, :] = fill
        work[:, col] = fill


class FaceTracker:
    """Assigns each detection of a sampled frame to a track (see the module doc). Frames must come in order."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config if config is not None else TrackerConfig()
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._last_frame: int | None = None

    @property
    def live_track_ids(self) -> list[int]:
        """Tracks matched recently enough to be continued (including lost ones still in the buffer)."""
        return [track.track_id for track in self._tracks]

    def update(self, frame_index: int, boxes: npt.ArrayLike, scores: npt.ArrayLike) -> list[TrackAssignment]:
        """Assign this frame's detections; returns one assignment per kept detection, in detection order.

        Args:
            frame_index: the frame's index in the video (increasing from call to call).
            boxes: ``(n, 4)`` ``bbox_xyxy`` of the detections.
            scores: ``(n,)`` detector scores.

        Raises:
            UsageError: frames out of order, or shapes that do not fit.
        """
        config = self.config
        det_boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        det_scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if det_scores.shape[0] != det_boxes.shape[0]:
            raise UsageError(f"{det_boxes.shape[0]} boxes but {det_scores.shape[0]} scores")
        if self._last_frame is not None and frame_index <= self._last_frame:
            raise UsageError(f"frame {frame_index} after frame {self._last_frame}: frames must come in order")
        previous_frame = self._last_frame
        self._last_frame = frame_index

        # Lost-track buffer: forget tracks unseen for too long.
        self._tracks = [t for t in self._tracks if frame_index - t.last_frame <= config.max_lost_frames]
        predicted = np.stack([t.predict(frame_index) for t in self._tracks]) if self._tracks else np.zeros((0, 4))
        high = [i for i in range(len(det_scores)) if det_scores[i] >= config.high_score]
        low = [i for i in range(len(det_scores)) if config.low_score <= det_scores[i] < config.high_score]
        matched: dict[int, int] = {}  # detection -> track position
        free_tracks = list(range(len(self._tracks)))

        def match(dets: Sequence[int], tracks: Sequence[int], minimum: float) -> None:
            if not dets or not tracks:
                return
            ious = iou_matrix(predicted[list(tracks)], det_boxes[list(dets)])
            for row, col in _greedy(ious, minimum):
                if minimum <= 0.0 and ious[row, col] <= 0.0:
                    continue
                matched[dets[col]] = tracks[row]

        match(high, free_tracks, config.match_iou)
        free_tracks = [t for t in free_tracks if t not in matched.values()]
        # Low-score detections only continue tracks that were seen at the previous sampled frame.
        recent = [t for t in free_tracks if self._tracks[t].last_frame == previous_frame]
        match(low, recent, config.low_match_iou)
        free_tracks = [t for t in free_tracks if t not in matched.values()]
        self._match_by_distance([d for d in high if d not in matched], free_tracks, predicted, det_boxes, matched)

        assignments: list[TrackAssignment] = []
        for det in range(len(det_scores)):
            if det in matched:
                track = self._tracks[matched[det]]
                self._advance(track, det_boxes[det], frame_index)
                assignments.append(TrackAssignment(det, track.track_id, is_new=False))
            elif det in high:
                track = _Track(self._next_id, det_boxes[det].copy(), np.zeros(4), frame_index, 1)
                self._next_id += 1
                self._tracks.append(track)
                assignments.append(TrackAssignment(det, track.track_id, is_new=True))
        return assignments

    def _match_by_distance(
        self, dets: list[int], tracks: list[int], predicted: Boxes, det_boxes: Boxes, matched: dict[int, int]
    ) -> None:
        config = self.config
        if not dets or not tracks or config.max_center_distance <= 0.0:
            return
        track_boxes = predicted[tracks]
        boxes = det_boxes[dets]
        centre_t = (track_boxes[:, :2] + track_boxes[:, 2:]) / 2.0
        centre_d = (boxes[:, :2] + boxes[:, 2:]) / 2.0
        width_t = np.maximum(track_boxes[:, 2] - track_boxes[:, 0], 1.0)
        width_d = np.maximum(boxes[:, 2] - boxes[:, 0], 1.0)
        distance = np.linalg.norm(centre_t[:, None, :] - centre_d[None, :, :], axis=2) / width_t[:, None]
        ratio = np.maximum(width_t[:, None] / width_d[None, :], width_d[None, :] / width_t[:, None])
        distance = np.where(ratio <= config.max_size_ratio, distance, np.inf)
        for row, col in _greedy(distance, config.max_center_distance, higher_is_better=False):
            matched[dets[col]] = tracks[row]

    def _advance(self, track: _Track, box: Boxes, frame_index: int) -> None:
        elapsed = frame_index - track.last_frame
        if elapsed > 0:
            observed = (box - track.box) / float(elapsed)
            weight = self.config.velocity_smoothing if track.hits > 1 else 1.0
            track.velocity = weight * observed + (1.0 - weight) * track.velocity
        track.box = box.copy()
        track.last_frame = frame_index
        track.hits += 1
