"""Try detectors in order until one finds a face: cheap first, robust later, a flagged guess last."""

from __future__ import annotations

from collections.abc import Sequence

from faceprint.detect.base import Detector
from faceprint.errors import InvalidArgumentError
from faceprint.types import Detection, RGBImage


class CascadeDetector:
    """Returns the detections of the first stage that finds any face.

    Example:
        >>> CascadeDetector([DlibHogDetector(upsample=0), DlibHogDetector(upsample=1)])  # doctest: +SKIP
    """

    def __init__(self, stages: Sequence[Detector]) -> None:
        if not stages:
            raise InvalidArgumentError("a cascade needs at least one detector")
        self.stages = tuple(stages)

    @property
    def name(self) -> str:
        return "cascade(" + ",".join(stage.name for stage in self.stages) + ")"

    def detect(self, image: RGBImage) -> list[Detection]:
        for stage in self.stages:
            found = stage.detect(image)
            if found:
                return found
        return []
