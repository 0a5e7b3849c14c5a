"""The Detector and Landmarker protocols."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from faceprint.types import Detection, RGBImage


@runtime_checkable
class Detector(Protocol):
    """Finds faces: boxes and scores, in pixels of the image it is given, best first."""

    @property
    def name(self) -> str: ...

    def detect(self, image: RGBImage) -> list[Detection]: ...


@runtime_checkable
class Landmarker(Protocol):
    """Adds landmarks to detections (the 5-point order is dlib's: see faceprint.align)."""

    @property
    def name(self) -> str: ...

    def landmarks(self, image: RGBImage, detection: Detection) -> tuple[tuple[float, float], ...]: ...
