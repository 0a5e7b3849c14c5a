"""dlib's MMOD CNN face detector: more robust to pose than HOG, but slow on a CPU without BLAS."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from faceprint.detect.dlib_hog import _clip_box, import_dlib
from faceprint.detect.mmod_decode import input_plan, rect_up
from faceprint.errors import InvalidArgumentError
from faceprint.types import Detection, RGBImage

MAX_INPUT_PX = 2_250_000
"""Bound on the pixels dlib's network sees (as :data:`faceprint.detect.onnx_mmod.MAX_INPUT_PX`)."""


class DlibMmodDetector:
    """Runs ``mmod_human_face_detector.dat`` with dlib (about 2.5 s for a 640 px image on 2 cores).

    Example:
        >>> DlibMmodDetector(Path("mmod_human_face_detector.dat")).detect(image)  # doctest: +SKIP
    """

    def __init__(self, model_path: Path, *, upsample: int = 0, max_input_px: int | None = MAX_INPUT_PX) -> None:
        if upsample < 0 or upsample > 3:
            raise InvalidArgumentError(f"upsample must be 0-3, got {upsample}")
        self.upsample = upsample
        self.max_input_px = max_input_px
        self._detector = import_dlib().cnn_face_detection_model_v1(str(model_path))

    @property
    def name(self) -> str:
        return f"dlib-mmod@{self.upsample}"

    def detect(self, image: RGBImage) -> list[Detection]:
        """Faces, best first; images beyond ``max_input_px`` are upsampled less or downsized first."""
        height, width = image.shape[:2]
        upsample, scale = input_plan(height, width, self.upsample, self.max_input_px)
        back_x = back_y = 1.0
        if scale < 1.0:
            small_wh = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
            image = np.ascontiguousarray(Image.fromarray(image).resize(small_wh, Image.Resampling.BILINEAR))
            back_x, back_y = width / small_wh[0], height / small_wh[1]
        detections = []
        for found in self._detector(image, upsample):
            rect = found.rect
            left, top, right, bottom = rect_up((rect.left(), rect.top(), rect.right(), rect.bottom()), back_x, back_y)
            box = _clip_box((left, top, right + 1, bottom + 1), width, height)
            if box is not None:
                detections.append(Detection(bbox_xyxy=box, score=float(found.confidence), detector=self.name))
        return sorted(detections, key=lambda d: d.score, reverse=True)
