"""Last-resort "detector" for pre-cropped face photos (ID photos, LFW-style crops).

When every real detector fails on a small, roughly square image, a face-sized box in its centre is
returned, flagged ``assumed_center_crop`` so callers and reports can tell it apart from a detection.
"""

from __future__ import annotations

from faceprint.errors import InvalidArgumentError
from faceprint.types import Detection, RGBImage

ASSUMED_CENTER_CROP = "assumed_center_crop"


class CenterCropDetector:
    """A centred box of ``box_fraction`` of the shorter side, only for images that look pre-cropped.

    Example:
        >>> import numpy as np
        >>> CenterCropDetector().detect(np.zeros((250, 250, 3), np.uint8))[0].bbox_xyxy
        (70.0, 70.0, 180.0, 180.0)
    """

    def __init__(self, *, box_fraction: float = 0.44, max_side_px: int = 600, max_aspect: float = 1.5) -> None:
        if not 0.0 < box_fraction <= 1.0:
            raise InvalidArgumentError("box_fraction must be in (0, 1]")
        self.box_fraction = box_fraction
        self.max_side_px = max_side_px
        self.max_aspect = max_aspect

    @property
    def name(self) -> str:
        return "center-crop"

    def detect(self, image: RGBImage) -> list[Detection]:
        height, width = image.shape[:2]
        if max(width, height) > self.max_side_px or max(width, height) > self.max_aspect * min(width, height):
            return []
        side = self.box_fraction * min(width, height)
        cx, cy = width / 2.0, height / 2.0
        box = (round(cx - side / 2, 2), round(cy - side / 2, 2), round(cx + side / 2, 2), round(cy + side / 2, 2))
        return [Detection(bbox_xyxy=box, score=0.0, detector=self.name, flags=(ASSUMED_CENTER_CROP,))]
