"""Facial landmarks with dlib's shape predictors.

The default is the 5-point model (eye corners and nose base; CC0). The 68-point model is trained on iBUG
300-W, whose licence forbids commercial use: it is available only when asked for by name.

Point order of the 5-point model (dlib's): 0-1 one eye's corners, 2-3 the other eye's, 4 the nose base.
"""

from __future__ import annotations

from pathlib import Path

from faceprint.detect.dlib_hog import import_dlib
from faceprint.types import Detection, RGBImage


class DlibShapeLandmarker:
    """Runs a dlib ``shape_predictor`` inside a detection box.

    Example:
        >>> DlibShapeLandmarker(Path("shape_predictor_5_face_landmarks.dat")).landmarks(img, det)  # doctest: +SKIP
    """

    def __init__(self, model_path: Path, *, name: str = "dlib-landmarks-5") -> None:
        dlib = import_dlib()
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(model_path))
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def landmarks(self, image: RGBImage, detection: Detection) -> tuple[tuple[float, float], ...]:
        left, top, right, bottom = detection.bbox_xyxy
        rect = self._dlib.rectangle(round(left), round(top), round(right) - 1, round(bottom) - 1)
        shape = self._predictor(image, rect)
        return tuple((float(shape.part(i).x), float(shape.part(i).y)) for i in range(shape.num_parts))
