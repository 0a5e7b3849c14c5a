"""People in videos: sampled frames → detections → tracks → best chips embedded → identities → segments.

The whole run goes through the analysis engine (:mod:`faceprint.analyze`), never a path of its own:

1. frames are read with :mod:`faceprint.io.video` and sampled (``sample_fps``, default 5, or every N frames);
2. each sampled frame is one engine item, detection only (``face="all"``, ``embed=False``) at
   ``face_detection_scale`` (the longest side, in pixels, the frame is resized to for detection);
3. the detections are tracked (:mod:`faceprint.video.track`);
4. each track keeps its best few chips, chosen by size, detector score and frontalness (the engine's
   :class:`~faceprint.types.FaceQuality` yaw), as a padded crop of the face, not the whole frame; when the
   track ends they are embedded through the engine with the detections given (no second detection);
5. each track's faceprint is the mean of its chips' unit vectors; it is identified against the galleries
   (:class:`~faceprint.gallery.search.MultiGalleryIndex`), unknown tracks optionally clustered with
   cannot-link (two tracks on screen at one frame are never one person) and stored as persistent unknowns;
6. the tracks of each person become segments (:mod:`faceprint.video.segments`), DeepVA's result format.

Memory: one frame decoded at a time plus the engine's in-flight frames; per live track a few small crops.

Example:
    >>> with Analyzer() as analyzer:  # doctest: +SKIP
    ...     report = analyze_videos(["talk.mp4"], AnalyzerVideoEngine(analyzer), [staff])
    >>> report.to_deepva()["data"][0]["meta"]["person"]  # doctest: +SKIP
    'Jane Doe'
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from faceprint.cluster import group_by_label, index_unknowns
from faceprint.errors import InputError, UsageError
from faceprint.execute.base import CancelledError
from faceprint.gallery.base import Gallery, IdentifyResult, Person, SearchHit
from faceprint.gallery.index import normalize_rows
from faceprint.gallery.search import MultiGalleryIndex
from faceprint.io.video import FrameSampling, VideoFrame, VideoInfo, VideoLimits, VideoReader, open_video
from faceprint.types import Detection, Face, Faceprint, FaceQuality, RGBImage
from faceprint.video.segments import (
    MODULE,
    UNKNOWN,
    FaceTrack,
    Segment,
    Thumbnail,
    TrackDetection,
    TrackIdentity,
    build_segments,
    cluster_tracks,
)
from faceprint.video.track import FaceTracker, TrackerConfig

MIN_DETECTION_SCALE = 100
MAX_DETECTION_SCALE = 2000


# --- options ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VideoOptions:
    """Everything that decides what a video run finds (all validated here, not in the CLI)."""

    sample_fps: Fraction | None = None
    """Frames per second to detect on (default 5); or give ``every_n_frames``."""
    every_n_frames: int | None = None
    face_detection_scale: int = 600
    """Longest side, in pixels, a frame is resized to for detection (DeepVA's name), 100-2000."""
    chips_per_track: int = 3
    """Best chips of each track embedded and averaged."""
    min_track_detections: int = 2
    """Tracks seen in fewer sampled frames are dropped as spurious detections (1 keeps every face)."""
    track_buffer_s: Fraction = Fraction(1)
    """How long a tracked face may go undetected (occlusion, a missed detection) and still continue."""
    segment_gap_s: Fraction = Fraction(2)
    """A person's segment ends when they are gone for longer than this."""
    top_k: int = 3
    """``closest_k_persons`` per segment; 0 turns it off."""
    min_similarity: float | None = None
    """Accept a person at or above this cosine similarity (default: the model's identification threshold)."""
    max_distance: float | None = None
    """… or at or below this distance between unit vectors, 0-2 (give at most one)."""
    cluster_unknowns: bool = False
    """Label unknown tracks ``Unknown #n`` by clustering them across the video (cannot-link in time)."""
    cluster_min_similarity: float | None = None
    """Clustering cut-off (average linkage); defaults to the identification cut-off."""
    max_templates_per_unknown: int = 10
    crop_padding: float = 0.75
    """Context kept around a face box for its chip, as a fraction of the box's longest side, each side."""
    thumbnails: bool = True
    """A JPEG of each track's best face (segments' ``thumbnail``); False: ``None``, no JPEG ever encoded."""
    limits: VideoLimits = field(default_factory=VideoLimits)

    def __post_init__(self) -> None:
        FrameSampling(sample_fps=self.sample_fps, every_n_frames=self.every_n_frames)
        if not MIN_DETECTION_SCALE <= self.face_detection_scale <= MAX_DETECTION_SCALE:
            raise UsageError(
                f"face_detection_scale must be {MIN_DETECTION_SCALE}-{MAX_DETECTION_SCALE} px, "
                f"got {self.face_detection_scale}"
            )
        if self.chips_per_track < 1 or self.min_track_detections < 1:
            raise UsageError("chips_per_track and min_track_detections must be at least 1")
        if self.track_buffer_s < 0 or self.segment_gap_s < 0:
            raise UsageError("track_buffer_s and segment_gap_s must be non-negative")
        if self.top_k < 0:
            raise UsageError(f"top_k must be non-negative, got {self.top_k}")
        if self.min_similarity is not None and self.max_distance is not None:
            raise UsageError("give min_similarity or max_distance, not both")
        if self.max_distance is not None and not 0.0 <= self.max_distance <= 2.0:
            raise UsageError(f"max_distance must be within 0-2, got {self.max_distance}")
        if self.min_similarity is not None and not -1.0 <= self.min_similarity <= 1.0:
            raise UsageError(f"min_similarity must be within -1 to 1, got {self.min_similarity}")
        if self.crop_padding < 0.3:
            raise UsageError("crop_padding below 0.3 cuts off what alignment needs")
        if self.max_templates_per_unknown < 1:
            raise UsageError("max_templates_per_unknown must be at least 1")

    @property
    def sampling(self) -> FrameSampling:
        return FrameSampling(sample_fps=self.sample_fps, every_n_frames=self.every_n_frames)

    def tracker_config(self, fps: Fraction) -> TrackerConfig:
        return TrackerConfig(max_lost_frames=math.ceil(self.track_buffer_s * fps))

    def to_dict(self) -> dict[str, Any]:
        return {
            "sample_fps": None if self.sampling.sample_fps is None else float(self.sampling.sample_fps),
            "every_n_frames": self.every_n_frames,
            "face_detection_scale": self.face_detection_scale,
            "chips_per_track": self.chips_per_track,
            "min_track_detections": self.min_track_detections,
            "track_buffer_s": float(self.track_buffer_s),
            "segment_gap_s": float(self.segment_gap_s),
            "top_k": self.top_k,
            "min_similarity": self.min_similarity,
            "max_distance": self.max_distance,
            "cluster_unknowns": self.cluster_unknowns,
            "thumbnails": self.thumbnails,
        }


def default_thumbnails(*, confidential: bool, asked: bool | None) -> bool:
    """Whether a run makes thumbnails: as asked, else on, except in confidential mode (no face image kept).

    The one rule for every caller (``faceprint video --thumbnails/--no-thumbnails``, the job service's
    ``thumbnails`` parameter): a thumbnail is a picture of a face, which confidential mode keeps only
    when asked for explicitly.

    Example:
        >>> default_thumbnails(confidential=False, asked=None), default_thumbnails(confidential=True, asked=None)
        (True, False)
        >>> default_thumbnails(confidential=True, asked=True), default_thumbnails(confidential=False, asked=False)
        (True, False)
    """
    return asked if asked is not None else not confidential


# --- what the video run needs from the engine ------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class FaceCrop:
    """A padded crop around one face and the face's detection in the crop's pixels."""

    key: str
    image: RGBImage
    detection: Detection


class VideoFaceEngine(Protocol):
    """The two calls a video run makes; :class:`AnalyzerVideoEngine` maps them onto the analysis engine."""

    @property
    def contract_id(self) -> str: ...

    @property
    def model_id(self) -> str: ...

    @property
    def default_min_similarity(self) -> float:
        """The identification cut-off when the caller gives none."""
        ...

    def detect_frames(
        self, frames: Iterable[VideoFrame], *, max_side_px: int, cancel: threading.Event | None = None
    ) -> Iterator[tuple[VideoFrame, list[Face]]]:
        """Every face of each frame (detection, landmarks, quality; no faceprint), frames in input order."""
        ...

    def embed_crops(self, crops: Sequence[FaceCrop], *, cancel: threading.Event | None = None) -> list[Face | None]:
        """The given faces embedded (one per crop, in order; None where the engine could not)."""
        ...


# --- tracking and chip choice ----------------------------------------------------------------------------


def chip_score(detection: Detection, quality: FaceQuality | None) -> float:
    """How good a chip is for recognition: size (saturating at 60 px between the eyes, or a 160 px box
    without a quality measure), detector confidence (a logistic of the score) and frontalness (cosine of
    the yaw).

    Example:
        >>> d = Detection(bbox_xyxy=(0, 0, 80, 80), score=1.0, detector="dlib-hog")
        >>> round(chip_score(d, None), 3)
        0.44
    """
    if quality is not None:
        size = min(quality.interocular_px / 60.0, 1.0)
        frontal = max(math.cos(math.radians(min(abs(quality.yaw_deg), 90.0))), 0.05)
        confidence = 1.0 / (1.0 + math.exp(-2.0 * quality.detector_score))
    else:
        size = min(detection.width / 160.0, 1.0)
        frontal = 1.0
        confidence = 1.0 / (1.0 + math.exp(-2.0 * detection.score))
    return size * frontal * confidence


def crop_face(image: RGBImage, detection: Detection, *, padding: float, key: str) -> FaceCrop:
    """A crop of ``image`` around ``detection`` with ``padding`` x the box's longest side on each side."""
    height, width = image.shape[:2]
    left, top, right, bottom = detection.bbox_xyxy
    margin = padding * max(right - left, bottom - top)
    x0, y0 = max(0, math.floor(left - margin)), max(0, math.floor(top - margin))
    x1, y1 = min(width, math.ceil(right + margin)), min(height, math.ceil(bottom + margin))
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    moved = Detection(
        bbox_xyxy=(left - x0, top - y0, right - x0, bottom - y0),
        score=detection.score,
        detector=detection.detector,
        landmarks_xy=None
        if detection.landmarks_xy is None
        else tuple((x - x0, y - y0) for x, y in detection.landmarks_xy),
        flags=detection.flags,
    )
    return FaceCrop(key=key, image=crop, detection=moved)


@dataclass(slots=True)
class _Candidate:
    score: float
    frame_index: int
    crop: FaceCrop


@dataclass(slots=True)
class _TrackBuilder:
    track_id: int
    detections: list[TrackDetection] = field(default_factory=list)
    candidates: list[_Candidate] = field(default_factory=list)

    def add(self, frame: VideoFrame, face: Face, *, options: VideoOptions) -> None:
        detection = face.detection
        self.detections.append(TrackDetection(frame.index, detection.bbox_xyxy, float(detection.score)))
        score = chip_score(detection, face.quality)
        worst = min(self.candidates, key=lambda c: c.score) if self.candidates else None
        if len(self.candidates) >= options.chips_per_track and worst is not None and worst.score >= score:
            return
        crop = crop_face(
            frame.image, detection, padding=options.crop_padding, key=f"track{self.track_id}@{frame.index}"
        )
        if len(self.candidates) >= options.chips_per_track and worst is not None:
            self.candidates.remove(worst)
        self.candidates.append(_Candidate(score, frame.index, crop))


def _thumbnail(candidate: _Candidate) -> Thumbnail:
    crop = candidate.crop
    left, top, right, bottom = crop.detection.bbox_xyxy
    margin = 0.2 * max(right - left, bottom - top)
    height, width = crop.image.shape[:2]
    x0, y0 = max(0, math.floor(left - margin)), max(0, math.floor(top - margin))
    x1, y1 = min(width, math.ceil(right + margin)), min(height, math.ceil(bottom + margin))
    return Thumbnail.from_image(np.ascontiguousarray(crop.image[y0:y1, x0:x1]), frame_index=candidate.frame_index)


@dataclass(frozen=True, slots=True)
class VideoProgress:
    """Progress of one video: frames read so far (sampled or not) of ``total_frames``."""

    source: str
    frames_done: int
    total_frames: int
    tracks: int


ProgressFn = Callable[[VideoProgress], None]


def track_faces(
    reader: VideoReader,
    engine: VideoFaceEngine,
    *,
    options: VideoOptions,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    embed_batch_crops: int = 16,
) -> list[FaceTrack]:
    """Detect on sampled frames, track, and embed the best chips of every track (see the module doc).

    Tracks that end are embedded in batches while the video is still being read, so memory does not grow
    with the video's length beyond the tracks' detections.
    """
    info = reader.info
    tracker = FaceTracker(options.tracker_config(info.fps))
    live: dict[int, _TrackBuilder] = {}
    ended: list[_TrackBuilder] = []
    tracks: list[FaceTrack] = []

    def flush(builders: list[_TrackBuilder]) -> None:
        kept = [b for b in builders if len(b.detections) >= options.min_track_detections]
        tracks.extend(_embed_tracks(kept, engine, cancel=cancel, thumbnails=options.thumbnails))

    frames = reader.frames(sampling=options.sampling, detect_max_side_px=options.face_detection_scale)
    for frame, found in engine.detect_frames(frames, max_side_px=options.face_detection_scale, cancel=cancel):
        if cancel is not None and cancel.is_set():
            raise CancelledError(f"{info.path}: cancelled at frame {frame.index}")
        faces = [_in_full_frame(face, frame) for face in found]
        boxes = np.array([f.detection.bbox_xyxy for f in faces], dtype=np.float64).reshape(-1, 4)
        scores = np.array([f.detection.score for f in faces], dtype=np.float64)
        for assignment in tracker.update(frame.index, boxes, scores):
            builder = live.setdefault(assignment.track_id, _TrackBuilder(assignment.track_id))
            builder.add(frame, faces[assignment.detection_index], options=options)
        still = set(tracker.live_track_ids)
        for track_id in [t for t in live if t not in still]:
            ended.append(live.pop(track_id))
        if sum(len(b.candidates) for b in ended) >= embed_batch_crops:
            flush(ended)
            ended = []
        if progress is not None:
            progress(VideoProgress(info.path, reader.stats.last_frame_index + 1, info.total_frames, len(tracks)))
    flush([*ended, *live.values()])
    if progress is not None:
        progress(VideoProgress(info.path, reader.stats.last_frame_index + 1, info.total_frames, len(tracks)))
    tracks.sort(key=lambda t: (t.frame_start, t.track_id))
    return tracks


def _in_full_frame(face: Face, frame: VideoFrame) -> Face:
    """A face found on the downsized frame, in the pixels of the full frame.

    The landmarks are dropped: the engine finds them again on the full-resolution crop when the face is
    embedded, more precisely than scaled-up ones.
    """
    if frame.detect_image is None:
        return face
    scale_x = frame.image.shape[1] / frame.detect_image.shape[1]
    scale_y = frame.image.shape[0] / frame.detect_image.shape[0]
    left, top, right, bottom = face.detection.bbox_xyxy
    detection = Detection(
        bbox_xyxy=(left * scale_x, top * scale_y, right * scale_x, bottom * scale_y),
        score=face.detection.score,
        detector=face.detection.detector,
        flags=face.detection.flags,
    )
    return Face(detection=detection, quality=face.quality)


def _embed_tracks(
    builders: list[_TrackBuilder], engine: VideoFaceEngine, *, cancel: threading.Event | None, thumbnails: bool = True
) -> list[FaceTrack]:
    if not builders:
        return []
    crops: list[FaceCrop] = []
    for builder in builders:
        builder.candidates.sort(key=lambda c: -c.score)
        crops.extend(c.crop for c in builder.candidates)
    embedded = engine.embed_crops(crops, cancel=cancel)
    if len(embedded) != len(crops):
        raise RuntimeError(f"the engine returned {len(embedded)} results for {len(crops)} crops")
    results = iter(embedded)
    tracks: list[FaceTrack] = []
    for builder in builders:
        faceprints: list[Faceprint] = []
        thumb: Thumbnail | None = None
        for candidate in builder.candidates:
            face = next(results)
            if face is None or face.faceprint is None:
                continue
            faceprints.append(face.faceprint)
            if thumb is None and thumbnails:
                thumb = _thumbnail(candidate)
        if thumb is None and thumbnails and builder.candidates:
            thumb = _thumbnail(builder.candidates[0])
        tracks.append(
            FaceTrack(
                track_id=builder.track_id,
                detections=tuple(builder.detections),
                faceprints=tuple(faceprints),
                thumbnail=thumb,
            )
        )
    return tracks


# --- identification --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrackIdentification:
    """Who every track of one video is."""

    identities: tuple[TrackIdentity, ...]
    similarity_to: dict[int, list[float]]
    """Per track id: cosine similarity of each chip to the track's closest person."""
    min_similarity: float
    new_unknowns: tuple[Person, ...]


def identify_tracks(
    tracks: Sequence[FaceTrack],
    galleries: Sequence[Gallery],
    *,
    options: VideoOptions,
    default_min_similarity: float,
    index_unknowns_into: Gallery | None = None,
    source: str = "",
) -> TrackIdentification:
    """Identify each track's mean faceprint; cluster and store the unknown ones when asked.

    The ``index_unknowns_into`` gallery is searched too, so persistent unknowns keep their ids from video to
    video.
    """
    search_in = list(galleries)
    if index_unknowns_into is not None and index_unknowns_into.name not in {g.name for g in galleries}:
        search_in.append(index_unknowns_into)
    by_name = {g.name: g for g in search_in}
    index = MultiGalleryIndex(search_in)
    cutoff = index.resolve_min_similarity(
        min_similarity=options.min_similarity,
        max_distance=options.max_distance,
        default_min_similarity=default_min_similarity,
    )
    probes = [(i, fp) for i, fp in enumerate(t.mean_faceprint() for t in tracks) if fp is not None]
    results: dict[int, IdentifyResult] = {}
    if probes:
        found = index.search(
            [fp for _, fp in probes],
            top_k=max(options.top_k, 1),
            min_similarity=cutoff,
        )
        results = {i: result for (i, _), result in zip(probes, found, strict=True)}

    unmatched = [i for i, _ in probes if results[i].best is None]
    cluster_of: dict[int, int] = {}
    person_of: dict[int, Person] = {}
    new_unknowns: list[Person] = []
    if unmatched and (options.cluster_unknowns or index_unknowns_into is not None):
        vectors = normalize_rows(np.stack([fp.vector for i, fp in probes if i in set(unmatched)]))
        conflicts = np.array([[tracks[a].overlaps(tracks[b]) and a != b for b in unmatched] for a in unmatched])
        threshold = options.cluster_min_similarity if options.cluster_min_similarity is not None else cutoff
        labels = cluster_tracks(
            vectors, cannot_link=conflicts.reshape(len(unmatched), len(unmatched)), min_similarity=threshold
        )
        cluster_of = dict(zip(unmatched, labels, strict=True))
        if index_unknowns_into is not None:
            chip_prints = [list(tracks[i].faceprints) for i in unmatched]
            groups = group_by_label(
                [fp for fps in chip_prints for fp in fps],
                [label for fps, label in zip(chip_prints, labels, strict=True) for _ in fps],
            )
            sources: list[list[str | None]] = [[] for _ in groups]
            for i, label in zip(unmatched, labels, strict=True):
                sources[label].extend(f"{source}#track{tracks[i].track_id}" for _ in tracks[i].faceprints)
            new_unknowns = index_unknowns(
                index_unknowns_into, groups, max_templates=options.max_templates_per_unknown, sources=sources
            )
            # index_unknowns skips empty clusters: map the remaining ones back in order.
            non_empty = [label for label in range(len(groups)) if groups[label]]
            person_for_label = dict(zip(non_empty, new_unknowns, strict=True))
            person_of = {i: person_for_label[label] for i, label in cluster_of.items()}

    identities: list[TrackIdentity] = []
    similarity_to: dict[int, list[float]] = {}
    for i, track in enumerate(tracks):
        result = results.get(i)
        closest = None if result is None else result.top
        matches = () if result is None else result.matches
        best = None if result is None else result.best
        if best is not None:
            identity = TrackIdentity(
                label=best.name,
                person_key=f"person:{best.gallery}/{best.person_id}",
                class_id=best.person_id,
                closest=closest,
                matches=matches,
                indexed_identity=best.person_id if best.is_unknown else None,
                is_unknown=best.is_unknown,
            )
        elif i in person_of:
            person = person_of[i]
            identity = TrackIdentity(
                label=person.name,
                person_key=f"person:{index_unknowns_into.name if index_unknowns_into else ''}/{person.person_id}",
                class_id=person.person_id,
                closest=closest,
                matches=matches,
                indexed_identity=person.person_id,
            )
        elif i in cluster_of:
            number = cluster_of[i] + 1
            identity = TrackIdentity(
                label=f"Unknown #{number}",
                person_key=f"cluster:{number}",
                class_id=None,
                closest=closest,
                matches=matches,
            )
        else:
            identity = TrackIdentity(
                label=UNKNOWN, person_key=f"track:{track.track_id}", class_id=None, closest=closest, matches=matches
            )
        identities.append(identity)
        if closest is not None and track.faceprints:
            similarity_to[track.track_id] = _chip_similarities(track, closest, by_name)
    return TrackIdentification(
        identities=tuple(identities),
        similarity_to=similarity_to,
        min_similarity=cutoff,
        new_unknowns=tuple(new_unknowns),
    )


def _chip_similarities(track: FaceTrack, person: SearchHit, galleries: dict[str, Gallery]) -> list[float]:
    """Each chip's similarity to ``person`` (the max over the person's templates, as in search)."""
    gallery = galleries.get(person.gallery)
    if gallery is None:
        return []
    templates = gallery.templates(person.person_id)
    if not templates:
        return []
    enrolled = normalize_rows(np.stack([t.faceprint.vector for t in templates]))
    chips = normalize_rows(np.stack([fp.vector for fp in track.faceprints]))
    return [float(v) for v in np.clip((chips @ enrolled.T).max(axis=1), -1.0, 1.0)]


# --- whole videos ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class VideoAnalysis:
    """Everything found in one video, or why it could not be read."""

    source: str
    info: VideoInfo | None
    segments: tuple[Segment, ...] = ()
    tracks: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    min_similarity: float | None = None
    new_unknowns: tuple[Person, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error_code is None

    def summary(self, *, engine: VideoFaceEngine, options: VideoOptions) -> dict[str, Any]:
        """DeepVA's summary entry, plus ``processing`` (counts, warnings, model, cut-off, options)."""
        from faceprint import __version__

        labels = list(dict.fromkeys(s.identity.label for s in self.segments))
        info = self.info
        entry: dict[str, Any] = {
            "source": self.source,
            "media_type": "video",
            "info": None
            if info is None
            else {
                "fps": float(info.fps),
                "resolution": f"{info.size_wh[0]}x{info.size_wh[1]}",
                "total_frames": info.total_frames,
                "duration": float(info.duration_s),
            },
            "items": [{"type": "face", "label": label, "module": MODULE} for label in labels],
        }
        entry["processing"] = {
            "error": None if self.error_code is None else {"code": self.error_code, "message": self.error_message},
            **self.stats,
            "tracks": self.tracks,
            "segments": len(self.segments),
            "new_unknowns": [p.person_id for p in self.new_unknowns],
            "min_similarity": self.min_similarity,
            "model_id": engine.model_id,
            "contract_id": engine.contract_id,
            "package_version": __version__,
            "options": options.to_dict(),
        }
        return entry


@dataclass(frozen=True, slots=True, eq=False)
class VideoReport:
    """The result of a run over several videos."""

    videos: tuple[VideoAnalysis, ...]
    options: VideoOptions
    engine: VideoFaceEngine

    @property
    def failed(self) -> int:
        return sum(1 for v in self.videos if not v.ok)

    def to_deepva(self) -> dict[str, Any]:
        """``{"summary": [...], "data": [segments]}`` in DeepVA's ``face_recognition`` format."""
        data: list[dict[str, Any]] = []
        for video in self.videos:
            if video.info is None:
                continue
            data.extend(
                s.to_deepva(fps=video.info.fps, size_wh=video.info.size_wh, top_k=self.options.top_k)
                for s in video.segments
            )
        return {
            "summary": [v.summary(engine=self.engine, options=self.options) for v in self.videos],
            "data": data,
        }


def analyze_video(
    path: str | Path | BinaryIO,
    engine: VideoFaceEngine,
    galleries: Sequence[Gallery],
    *,
    options: VideoOptions | None = None,
    index_unknowns_into: Gallery | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> VideoAnalysis:
    """Find, track, identify and segment the people of one video; a bad video gives its error code.

    Raises:
        CancelledError: ``cancel`` was set (code ``cancelled``, as the engine's).
        UsageError / ContractMismatchError / ModelError: problems of the run, not of this video.
    """
    options = options if options is not None else VideoOptions()
    # A file object (a job's upload, read in place) has no path worth showing: "video" names it.
    source = str(path) if isinstance(path, str | Path) else "video"
    try:
        with open_video(path, limits=options.limits) as reader:
            tracks = track_faces(reader, engine, options=options, progress=progress, cancel=cancel)
            info = reader.info
            stats = {
                **reader.stats.to_dict(),
                "truncated": reader.truncated,
                "sampled_frames": reader.stats.yielded_frames,
            }
    except InputError as err:
        return VideoAnalysis(source=source, info=None, error_code=err.code, error_message=err.message)
    identified = identify_tracks(
        tracks,
        galleries,
        options=options,
        default_min_similarity=engine.default_min_similarity,
        index_unknowns_into=index_unknowns_into,
        source=source,
    )
    gap_frames = math.floor(options.segment_gap_s * info.fps)
    segments = build_segments(
        tracks,
        list(identified.identities),
        source=source,
        gap_frames=gap_frames,
        similarity_to=identified.similarity_to,
    )
    warning = None
    if reader.truncated:
        warning = ("truncated_video", f"{source}: the file ends before the frames its headers announce")
    return VideoAnalysis(
        source=source,
        info=info,
        segments=tuple(segments),
        tracks=len(tracks),
        stats={**stats, "warning": None if warning is None else {"code": warning[0], "message": warning[1]}},
        min_similarity=identified.min_similarity,
        new_unknowns=identified.new_unknowns,
    )


def analyze_videos(
    paths: Sequence[str | Path],
    engine: VideoFaceEngine,
    galleries: Sequence[Gallery],
    *,
    options: VideoOptions | None = None,
    index_unknowns_into: Gallery | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> VideoReport:
    """:func:`analyze_video` for each video in turn; an unreadable one is recorded and the rest go on."""
    options = options if options is not None else VideoOptions()
    if not paths:
        raise UsageError("no videos given")
    videos = tuple(
        analyze_video(
            path,
            engine,
            galleries,
            options=options,
            index_unknowns_into=index_unknowns_into,
            progress=progress,
            cancel=cancel,
        )
        for path in paths
    )
    return VideoReport(videos=videos, options=options, engine=engine)
