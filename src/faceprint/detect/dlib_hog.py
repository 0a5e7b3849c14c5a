"""dlib's HOG + linear SVM frontal face detector (weights compiled into dlib)."""

from __future__ import annotations

from typing import Any

from faceprint.errors import BackendUnavailableError
from faceprint.types import Detection, RGBImage

LOW_CONFIDENCE = "low_confidence"


def import_dlib() -> Any:
    """Import dlib lazily, with an actionable error when the wheel is missing."""
    try:
        import dlib
    except ImportError as err:  # pragma: no cover - dlib-bin is a core dependency
        raise BackendUnavailableError(
            "dlib is not installed: `pip install dlib-bin` (prebuilt, no compiler needed)"
        ) from err
    return dlib


class DlibHogDetector:
    """Finds frontal faces of about 80 px and up; each ``upsample`` step halves that size (and costs 4x).

    Example:
        >>> detector = DlibHogDetector(upsample=1)  # doctest: +SKIP
        >>> detector.detect(image)                   # doctest: +SKIP
    """

    def __init__(self, *, upsample: int = 1, adjust_threshold: float = 0.0, flags: tuple[str, ...] = ()) -> None:
        if upsample < 0 or upsample > 4:
            raise ValueError(f"upsample must be 0-4, got {upsample}")
        self.upsample = upsample
        self.adjust_threshold = adjust_threshold
        self.flags = flags
        self._detector = import_dlib().get_frontal_face_detector()

    @property
    def name(self) -> str:
        suffix = f"{self.adjust_threshold:+.1f}" if self.adjust_threshold else ""
        return f"dlib-hog@{self.upsample}{suffix}"

    def detect(self, image: RGBImage) -> list[Detection]:
        rects, scores, _ = self._detector.run(image, self.upsample, self.adjust_threshold)
        height, width = image.shape[:2]
        detections = []
        for rect, score in zip(rects, scores, strict=True):
            box = _clip_box((rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1), width, height)
            if box is not None:
                detections.append(Detection(bbox_xyxy=box, score=float(score), detector=self.name, flags=self.flags))
        return sorted(detections, key=lambda d: d.score, reverse=True)


def _clip_box(
    box: tuple[float, float, float, float], width: int, height: int
) -> tuple[float, float, float, float] | None:
    """Clip to the image; dlib boxes may stick out of it. None when nothing of the box is inside."""
    left, top = max(box[0], 0.0), max(box[1], 0.0)
    right, bottom = min(box[2], float(width)), min(box[3], float(height))
    if right <= left or bottom <= top:
        return None
    return (float(left), float(top), float(right), float(bottom))
