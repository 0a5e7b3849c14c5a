"""Tracks → per-person segments, and the DeepVA ``face_recognition`` result format.

A *track* is one face followed through consecutive sampled frames (:mod:`faceprint.video.track`). Once
each track has a person (named, a persistent unknown, ``Unknown #n`` or plain ``unknown``), the tracks of
one person are merged into *segments*: a segment is one person continuously on screen, and it ends when the
person is gone for longer than ``gap_frames``.

Times and timecodes are computed from the integer frame indices (:mod:`faceprint.video.timecode`).
Boxes are normalised to 0-1 of the upright frame (``x``, ``y`` the top-left corner, ``w``, ``h``).

Example:
    >>> det = TrackDetection(frame_index=10, bbox_xyxy=(64.0, 36.0, 128.0, 108.0), score=1.0)
    >>> det.normalized_xywh((640, 360))
    {'x': 0.1, 'y': 0.1, 'w': 0.1, 'h': 0.2}
"""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from faceprint.cluster import cluster_faces
from faceprint.errors import UsageError
from faceprint.gallery.base import SearchHit
from faceprint.gallery.index import normalize_rows
from faceprint.types import Faceprint, RGBImage
from faceprint.video.timecode import frame_time_s, smpte_timecode

MODULE = "face_recognition"
"""DeepVA's module name, written in every segment and summary item."""

UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class TrackDetection:
    """A track's face in one sampled frame (pixels of the upright frame)."""

    frame_index: int
    bbox_xyxy: tuple[float, float, float, float]
    score: float

    def normalized_xywh(self, size_wh: tuple[int, int]) -> dict[str, float]:
        """The box as DeepVA's ``{x, y, w, h}``, fractions 0-1 of the frame, clipped to it."""
        width, height = size_wh
        left = min(max(self.bbox_xyxy[0] / width, 0.0), 1.0)
        top = min(max(self.bbox_xyxy[1] / height, 0.0), 1.0)
        right = min(max(self.bbox_xyxy[2] / width, 0.0), 1.0)
        bottom = min(max(self.bbox_xyxy[3] / height, 0.0), 1.0)
        return {"x": round(left, 6), "y": round(top, 6), "w": round(right - left, 6), "h": round(bottom - top, 6)}


@dataclass(frozen=True, slots=True, eq=False)
class Thumbnail:
    """A JPEG of a track's best face."""

    jpeg: bytes
    frame_index: int
    size_wh: tuple[int, int]

    @classmethod
    def from_image(cls, image: RGBImage, *, frame_index: int, max_side_px: int = 160, quality: int = 85) -> Thumbnail:
        picture = Image.fromarray(image)
        picture.thumbnail((max_side_px, max_side_px), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=quality)
        return cls(jpeg=buffer.getvalue(), frame_index=frame_index, size_wh=picture.size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": base64.b64encode(self.jpeg).decode("ascii"),
            "meta": {
                "format": "jpeg",
                "frame_index": self.frame_index,
                "width": self.size_wh[0],
                "height": self.size_wh[1],
            },
        }


@dataclass(frozen=True, slots=True, eq=False)
class FaceTrack:
    """One tracked face: its detections, the faceprints of its best chips and their mean."""

    track_id: int
    detections: tuple[TrackDetection, ...]
    faceprints: tuple[Faceprint, ...]
    """Faceprints of the chosen chips (best first)."""
    thumbnail: Thumbnail | None

    def __post_init__(self) -> None:
        if not self.detections:
            raise ValueError("a track has at least one detection")

    @property
    def frame_start(self) -> int:
        return self.detections[0].frame_index

    @property
    def frame_end(self) -> int:
        return self.detections[-1].frame_index

    def overlaps(self, other: FaceTrack) -> bool:
        """Whether the two were on screen at a common frame (then they are two different people)."""
        return self.frame_start <= other.frame_end and other.frame_start <= self.frame_end

    def mean_faceprint(self) -> Faceprint | None:
        """The mean of the chips' unit vectors (re-normalised), with the first chip's metadata."""
        if not self.faceprints:
            return None
        unit = normalize_rows(np.stack([fp.vector for fp in self.faceprints]))
        mean = unit.mean(axis=0)
        norm = float(np.linalg.norm(mean))
        first = self.faceprints[0]
        return Faceprint(
            vector=(mean / norm if norm > 0 else mean).astype(np.float32),
            model_id=first.model_id,
            contract_id=first.contract_id,
            package_version=first.package_version,
            model_options={**dict(first.model_options), "aggregate": f"mean of {len(self.faceprints)} unit vectors"},
        )


@dataclass(frozen=True, slots=True)
class TrackIdentity:
    """Who a track is."""

    label: str
    """A person's name, ``unknown``, ``Unknown #n`` or a persistent unknown's name."""
    person_key: str
    """Tracks sharing a key are one person (merged into segments): ``person:<id>``, ``cluster:<n>``,
    ``track:<id>``."""
    class_id: str | None
    """The matched (or newly indexed) person's id, else None."""
    closest: SearchHit | None
    """The most similar person even below the cut-off (None for empty galleries)."""
    matches: tuple[SearchHit, ...] = ()
    indexed_identity: str | None = None
    """The persistent unknown's id when the track matched or created one."""
    is_unknown: bool = True


@dataclass(frozen=True, slots=True, eq=False)
class Segment:
    """One person continuously on screen."""

    segment_id: str
    source: str
    identity: TrackIdentity
    detections: tuple[TrackDetection, ...]
    track_ids: tuple[int, ...]
    thumbnail: Thumbnail | None
    mean_similarity: float | None
    """Mean cosine similarity of the segment's chips to the closest person (None without one)."""
    mean_distance: float | None
    """Mean Euclidean distance between unit vectors, ``sqrt(2 - 2 * similarity)``, 0-2."""

    @property
    def frame_start(self) -> int:
        return self.detections[0].frame_index

    @property
    def frame_end(self) -> int:
        return self.detections[-1].frame_index

    def to_deepva(self, *, fps: Fraction, size_wh: tuple[int, int], top_k: int) -> dict[str, Any]:
        """The segment with exactly DeepVA's fields."""
        identity = self.identity
        closest = identity.closest
        return {
            "id": self.segment_id,
            "media_type": "video",
            "frame_start": self.frame_start,
            "frame_end": self.frame_end,
            "source": self.source,
            "module": MODULE,
            "meta": {
                "person": identity.label,
                "class_id": identity.class_id,
                "closest_person": None if closest is None else closest.name,
                "mean_distance": None if self.mean_distance is None else round(self.mean_distance, 6),
                "mean_similarity": None if self.mean_similarity is None else round(self.mean_similarity, 6),
                "indexed_identity": identity.indexed_identity,
                "closest_k_persons": [
                    {"person": hit.name, "similarity": round(hit.similarity, 6)} for hit in identity.matches[:top_k]
                ],
            },
            "thumbnail": None if self.thumbnail is None else self.thumbnail.to_dict(),
            "detections": [
                {"frame_index": d.frame_index, "type": "face_bbox", "data": d.normalized_xywh(size_wh)}
                for d in self.detections
            ],
            "time_start": float(frame_time_s(self.frame_start, fps)),
            "time_end": float(frame_time_s(self.frame_end, fps)),
            "tc_start": smpte_timecode(self.frame_start, fps),
            "tc_end": smpte_timecode(self.frame_end, fps),
        }


@dataclass(slots=True)
class _Run:
    detections: list[TrackDetection] = field(default_factory=list)
    tracks: list[FaceTrack] = field(default_factory=list)


def build_segments(
    tracks: Sequence[FaceTrack],
    identities: Sequence[TrackIdentity],
    *,
    source: str,
    gap_frames: int,
    similarity_to: dict[int, list[float]] | None = None,
) -> list[Segment]:
    """Merge the tracks of each person into segments; a segment ends when its person is gone > ``gap_frames``.

    Args:
        tracks: the video's tracks.
        identities: one per track.
        source: the video, as written in every segment.
        gap_frames: the longest absence (frames between two sightings) that does not end a segment.
        similarity_to: per track id, the cosine similarities of its chips to its closest person.

    Returns:
        Segments ordered by start frame (then person).

    Example:
        >>> a = FaceTrack(1, (TrackDetection(0, (0, 0, 9, 9), 1.0), TrackDetection(5, (0, 0, 9, 9), 1.0)), (), None)
        >>> b = FaceTrack(2, (TrackDetection(20, (0, 0, 9, 9), 1.0),), (), None)
        >>> who = TrackIdentity("Ada", "person:p-1", "p-1", None, is_unknown=False)
        >>> [(s.frame_start, s.frame_end) for s in build_segments([a, b], [who, who], source="v", gap_frames=10)]
        [(0, 5), (20, 20)]
    """
    if len(tracks) != len(identities):
        raise UsageError(f"{len(tracks)} tracks but {len(identities)} identities")
    if gap_frames < 0:
        raise UsageError(f"gap_frames must be non-negative, got {gap_frames}")
    by_person: dict[str, list[tuple[FaceTrack, TrackIdentity]]] = {}
    for track, identity in zip(tracks, identities, strict=True):
        by_person.setdefault(identity.person_key, []).append((track, identity))
    segments: list[Segment] = []
    for members in by_person.values():
        identity = members[0][1]
        sightings = sorted(
            ((d, track) for track, _ in members for d in track.detections), key=lambda item: item[0].frame_index
        )
        runs: list[_Run] = []
        for detection, track in sightings:
            run = runs[-1] if runs else None
            if run is None or detection.frame_index - run.detections[-1].frame_index > gap_frames:
                run = _Run()
                runs.append(run)
            if run.detections and run.detections[-1].frame_index == detection.frame_index:
                continue  # the same person twice in one frame cannot be; keep the first box
            run.detections.append(detection)
            if track not in run.tracks:
                run.tracks.append(track)
        for run in runs:
            segments.append(_segment(run, identity, source=source, similarity_to=similarity_to))
    segments.sort(key=lambda s: (s.frame_start, s.identity.label, s.frame_end))
    return segments


def _segment(
    run: _Run, identity: TrackIdentity, *, source: str, similarity_to: dict[int, list[float]] | None
) -> Segment:
    similarities = [s for track in run.tracks for s in (similarity_to or {}).get(track.track_id, [])]
    mean_similarity = float(np.mean(similarities)) if similarities else None
    mean_distance = float(np.mean([np.sqrt(max(0.0, 2.0 - 2.0 * s)) for s in similarities])) if similarities else None
    thumbnails = [t.thumbnail for t in run.tracks if t.thumbnail is not None]
    return Segment(
        segment_id=str(uuid.uuid4()),
        source=source,
        identity=identity,
        detections=tuple(run.detections),
        track_ids=tuple(t.track_id for t in run.tracks),
        thumbnail=thumbnails[0] if thumbnails else None,
        mean_similarity=mean_similarity,
        mean_distance=mean_distance,
    )


def cluster_tracks(vectors: npt.ArrayLike, *, cannot_link: npt.NDArray[np.bool_], min_similarity: float) -> list[int]:
    """Average-linkage clustering of track faceprints where ``cannot_link[i, j]`` pairs never share a cluster.

    :func:`faceprint.cluster.cluster_faces` with a conflict matrix: tracks on screen at a common frame are
    two people. Labels are 0-based, numbered by first appearance.

    Example:
        >>> v = np.array([[1, 0], [0.99, 0.1], [0.98, 0.12]], np.float32)
        >>> conflict = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], bool)
        >>> cluster_tracks(v, cannot_link=conflict, min_similarity=0.9)  # 0 and 1 were on screen together
        [0, 1, 1]
    """
    return cluster_faces(vectors, cannot_link=cannot_link, min_similarity=min_similarity)
