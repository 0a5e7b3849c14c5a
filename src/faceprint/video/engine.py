"""The video run's two calls mapped onto the analysis engine (:class:`faceprint.analyze.Analyzer`).

- :meth:`AnalyzerVideoEngine.detect_frames`: each sampled frame is one engine item (a decoded RGB array,
  already downsized to the detection scale by the reader), analysed with ``face="all"``, ``embed=False``
  and ``detect_max_side_px`` = the face detection scale: boxes, landmarks and quality, no faceprint.
  Frames stream through the engine's worker pool in order; only the frames in flight are held.
- :meth:`AnalyzerVideoEngine.embed_crops`: each chosen chip is one item, a padded crop of the face (cut
  from the full-resolution frame) with its detection given: the engine skips detection, finds the
  landmarks on the crop, and embeds in its batches.

Example:
    >>> with Analyzer() as analyzer:  # doctest: +SKIP
    ...     engine = AnalyzerVideoEngine(analyzer)
    ...     report = analyze_videos(["talk.mp4"], engine, [staff])
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace

from faceprint.analyze import AnalyzeItem, AnalyzeOptions, Analyzer
from faceprint.identify import identification_min_similarity
from faceprint.io.video import VideoFrame
from faceprint.pipeline import PipelineConfig
from faceprint.types import Face
from faceprint.video.pipeline import FaceCrop


def for_video(config: PipelineConfig) -> PipelineConfig:
    """``config`` as a video run needs it: no detector fallbacks.

    Most sampled frames of a video show no face, and the fallback cascade (HOG upsampled again, then the
    MMOD CNN) would run on every one of them: measured on the shared 640x360 clip, 30 s instead of 2.6 s.
    A face missed in one frame is found in the next ones; the tracker bridges the gap.

    Example:
        >>> for_video(PipelineConfig()).fallback
        False
    """
    return replace(config, fallback=False, assume_cropped=False)


class AnalyzerVideoEngine:
    """:class:`~faceprint.video.pipeline.VideoFaceEngine` on an :class:`~faceprint.analyze.Analyzer`.

    ``failed_frames`` counts frames the engine could not analyse (a worker crash, an internal error): they
    are treated as frames without a face and the run goes on.
    """

    def __init__(self, analyzer: Analyzer) -> None:
        self.analyzer = analyzer
        self.failed_frames = 0
        self.failed_crops = 0

    @property
    def contract_id(self) -> str:
        return self.analyzer.spec.contract_id

    @property
    def model_id(self) -> str:
        return self.analyzer.spec.id

    @property
    def default_min_similarity(self) -> float:
        # A track is searched against every enrolled person, like a photo in `identify`: the same cut-off.
        pipeline = self.analyzer.head
        return identification_min_similarity(pipeline.spec, pipeline.comparator)

    def detect_frames(
        self, frames: Iterable[VideoFrame], *, max_side_px: int, cancel: threading.Event | None = None
    ) -> Iterator[tuple[VideoFrame, list[Face]]]:
        in_flight: dict[str, VideoFrame] = {}

        def items() -> Iterator[AnalyzeItem]:
            for frame in frames:
                key = f"frame:{frame.index}"
                in_flight[key] = frame
                yield AnalyzeItem(key=key, source=frame.detection_image)

        options = AnalyzeOptions(face="all", embed=False, detect_max_side_px=max_side_px)
        for result in self.analyzer.analyze(items(), options=options, order="input", cancel=cancel):
            frame = in_flight.pop(result.key)
            if not result.ok and result.error_code != "no_face":
                self.failed_frames += 1
            faces = [Face(detection=f.detection, quality=f.quality) for f in result.faces]
            yield frame, faces

    def embed_crops(self, crops: Sequence[FaceCrop], *, cancel: threading.Event | None = None) -> list[Face | None]:
        items = [AnalyzeItem(key=crop.key, source=crop.image, detections=(crop.detection,)) for crop in crops]
        options = AnalyzeOptions(face="all", embed=True)
        out: list[Face | None] = []
        for result in self.analyzer.analyze(items, options=options, order="input", cancel=cancel):
            face = result.faces[0] if result.ok and result.faces else None
            if face is None or face.faceprint is None:
                self.failed_crops += 1
                out.append(None)
                continue
            out.append(Face(detection=face.detection, faceprint=face.faceprint, quality=face.quality))
        return out
