"""Video sources of a ``face_recognition`` job, through :mod:`faceprint.video.pipeline` (DeepVA segments).

When the video pipeline is not installed (no PyAV: the ``video`` extra) or lacks the engine adapter, a
video source gets the ``unsupported_media`` error and the rest of the job goes on.

Example:
    >>> isinstance(video_available(), bool)
    True
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from faceprint.errors import FaceprintError, InputError
from faceprint.gallery.base import Gallery
from faceprint.jobs.model import JobItem
from faceprint.jobs.uploads import UnsupportedMediaError, UploadRecord

if TYPE_CHECKING:
    from faceprint.jobs.context import JobContext
    from faceprint.jobs.recognition import RecognitionParams

__all__ = ["VideoTooLongError", "analyze_video_source", "video_available"]


class VideoTooLongError(InputError):
    """A video longer than the server's limit (``FACEPRINT_MAX_VIDEO_DURATION_S``)."""

    code = "video_too_long"
    http_status = 413


_POSITION_STRIDE = 1_000_000


def video_available() -> bool:
    """True when PyAV and the video pipeline's engine adapter are installed."""
    if importlib.util.find_spec("av") is None:
        return False
    try:
        importlib.import_module("faceprint.video.pipeline")
        module = importlib.import_module("faceprint.video.engine")
    except ImportError:
        return False
    return hasattr(module, "AnalyzerVideoEngine")


def analyze_video_source(
    ctx: JobContext,
    params: RecognitionParams,
    index: int,
    uri: str,
    record: UploadRecord,
    galleries: Sequence[Gallery],
    index_into: Gallery | None,
    report: Callable[[float], None],
) -> tuple[FaceprintError | tuple[str, str] | None, list[JobItem], dict[str, Any] | None]:
    """Segments of one video as items, its summary fields, or its error."""
    if not video_available():
        return (
            UnsupportedMediaError(f"{uri}: video jobs need the video pipeline (pip install 'faceprint[video]')"),
            [],
            None,
        )
    from fractions import Fraction

    from faceprint.io.video import VideoLimits, open_video
    from faceprint.video import pipeline as video
    from faceprint.video.engine import AnalyzerVideoEngine  # type: ignore[import-not-found,unused-ignore]

    options = video.VideoOptions(
        face_detection_scale=params.face_detection_scale,
        top_k=params.reported_top_k,
        max_distance=params.max_distance,
        cluster_unknowns=params.clusters,
        thumbnails=video.default_thumbnails(confidential=ctx.confidential, asked=params.thumbnails),
        limits=VideoLimits(max_side_px=ctx.limits.max_video_side_px, max_pixels=ctx.limits.max_video_pixels),
    )
    engine = AnalyzerVideoEngine(ctx.video_analyzer())

    try:
        with ctx.uploads.open(record.id) as handle, open_video(handle, limits=options.limits) as reader:
            duration_s = float(reader.info.duration_s)
    except InputError as err:
        return err, [], None
    if duration_s > ctx.limits.max_video_duration_s:
        return (
            VideoTooLongError(
                f"{uri}: {duration_s:.1f} s long, the limit is {ctx.limits.max_video_duration_s:.0f} s",
                details={"duration_s": duration_s},
            ),
            [],
            None,
        )

    def progress(p: Any) -> None:
        if p.total_frames:
            report(0.95 * min(1.0, p.frames_done / p.total_frames))

    try:
        with ctx.uploads.open(record.id) as source:
            analysis = video.analyze_video(
                source,
                engine,
                galleries,
                options=options,
                index_unknowns_into=index_into,
                progress=progress,
                cancel=ctx.cancel,
            )
    except InputError as err:
        return err, [], None
    if not analysis.ok or analysis.info is None:
        return (str(analysis.error_code), str(analysis.error_message)), [], None
    items = []
    fps: Fraction = analysis.info.fps
    for number, segment in enumerate(analysis.segments):
        data = segment.to_deepva(fps=fps, size_wh=analysis.info.size_wh, top_k=options.top_k)
        data["source"] = uri  # the server's path must never reach a client
        items.append(JobItem(key=f"{index:06d}:v{number:05d}", position=index * _POSITION_STRIDE + number, data=data))
    summary = analysis.summary(engine=engine, options=options)
    summary.pop("source", None)
    summary.pop("items", None)
    return None, items, summary
