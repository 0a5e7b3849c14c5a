"""dlib's HOG + linear SVM frontal face detector (weights compiled into dlib).

Building dlib's detector (``get_frontal_face_detector``) decompresses the weights compiled into dlib:
about 0.5 s on a laptop core, every time. Loading the same detector from its serialised form takes about
1 ms, so :func:`load_frontal_face_detector` builds it once, keeps it in the converted-model cache, and
every cascade stage shares that one native object: dlib's ``run(image, upsample, adjust_threshold)``
takes its parameters per call.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceprint.errors import BackendUnavailableError, InvalidArgumentError, ModelError
from faceprint.types import Detection, RGBImage

if TYPE_CHECKING:
    from faceprint.models.dlib_to_onnx import ConvertedModelCache

LOW_CONFIDENCE = "low_confidence"

HOG_MAX_UPSAMPLED_PX = 16_000_000
"""Largest image, after upsampling, dlib's HOG scan is run on (4000 x 4000 px, about 180 MB for the scan).

Measured: HOG at ``upsample=2`` on a 1600 x 1200 photo peaks at 340 MB and takes 5.5 s on one core. A
stage that would exceed this upsamples fewer times (faces it could still find: twice as large).
"""

HOG_CACHE_NAME = "dlib_frontal_face_detector.svm"
"""File name of dlib's built-in HOG detector serialised in a :class:`ConvertedModelCache` directory."""


def import_dlib() -> Any:
    """Import dlib lazily, with an actionable error when the wheel is missing."""
    try:
        import dlib
    except ImportError as err:  # pragma: no cover - dlib-bin is a core dependency
        raise BackendUnavailableError(
            "dlib is not installed: `pip install dlib-bin` (prebuilt, no compiler needed)"
        ) from err
    return dlib


def load_frontal_face_detector(cache: ConvertedModelCache | None = None) -> Any:
    """dlib's built-in HOG face detector (a native ``fhog_object_detector``), cheap to load after once.

    With ``cache``, the detector is serialised into the cache directory the first time (under the
    cache's file lock, with a sidecar naming the dlib version and the file's sha256) and loaded from
    there afterwards; a cache that cannot be written, or a file dlib refuses, falls back to building it.

    Example:
        >>> cache = ConvertedModelCache(default_model_dir() / "converted")           # doctest: +SKIP
        >>> native = load_frontal_face_detector(cache)                                # doctest: +SKIP
        >>> stages = [DlibHogDetector(upsample=u, native=native) for u in (0, 1, 2)]  # doctest: +SKIP
    """
    dlib = import_dlib()
    if cache is None:
        return dlib.get_frontal_face_detector()

    def serialise() -> bytes:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / HOG_CACHE_NAME
            dlib.get_frontal_face_detector().save(str(path))
            return path.read_bytes()

    recipe = {"source": "dlib.get_frontal_face_detector", "dlib_version": str(dlib.__version__)}
    try:
        path = cache.built_file(HOG_CACHE_NAME, recipe, serialise)
        return dlib.fhog_object_detector(str(path))
    except (ModelError, RuntimeError):
        # Unwritable cache, or a file this dlib cannot read: the compiled-in weights always work.
        return dlib.get_frontal_face_detector()


class DlibHogDetector:
    """Finds frontal faces of about 80 px and up; each ``upsample`` step halves that size (and costs 4x).

    Args:
        upsample: image doublings before detection, 0-4.
        adjust_threshold: added to dlib's SVM threshold; negative finds weaker (and falser) faces.
        flags: put on every detection, e.g. ``("low_confidence",)``.
        native: the dlib ``fhog_object_detector`` to run (share one between stages: see
            :func:`load_frontal_face_detector`); None builds dlib's built-in one.
        max_upsampled_px: bound on the upsampled image (:data:`HOG_MAX_UPSAMPLED_PX`); a big photo is
            upsampled fewer times. None: always ``upsample`` times.

    Example:
        >>> detector = DlibHogDetector(upsample=1)  # doctest: +SKIP
        >>> detector.detect(image)                   # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        upsample: int = 1,
        adjust_threshold: float = 0.0,
        flags: tuple[str, ...] = (),
        native: Any | None = None,
        max_upsampled_px: int | None = HOG_MAX_UPSAMPLED_PX,
    ) -> None:
        if upsample < 0 or upsample > 4:
            raise InvalidArgumentError(f"upsample must be 0-4, got {upsample}")
        self.upsample = upsample
        self.max_upsampled_px = max_upsampled_px
        self.adjust_threshold = adjust_threshold
        self.flags = flags
        self._detector = native if native is not None else load_frontal_face_detector()

    @property
    def native(self) -> Any:
        """The dlib detector object this stage runs (shared between stages built from one)."""
        return self._detector

    @property
    def name(self) -> str:
        suffix = f"{self.adjust_threshold:+.1f}" if self.adjust_threshold else ""
        return f"dlib-hog@{self.upsample}{suffix}"

    def upsample_for(self, height: int, width: int) -> int:
        """How many times an image of this size is upsampled: ``upsample``, less for big photos.

        Example:
            >>> stage = DlibHogDetector(upsample=2, native=object())
            >>> stage.upsample_for(500, 500), stage.upsample_for(1200, 1600), stage.upsample_for(5000, 5000)
            (2, 1, 0)
        """
        upsample = self.upsample
        if self.max_upsampled_px is not None:
            while upsample > 0 and height * width * 4**upsample > self.max_upsampled_px:
                upsample -= 1
        return upsample

    def detect(self, image: RGBImage) -> list[Detection]:
        height, width = image.shape[:2]
        rects, scores, _ = self._detector.run(image, self.upsample_for(height, width), self.adjust_threshold)
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
