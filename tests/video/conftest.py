"""A weight-free video engine for the video tests: faces are solid colour squares, a face's print its colour.

It stands in for the analysis engine beside the real-model tests (tests/video/test_real_video.py); it
implements exactly the two calls a video run makes (:class:`faceprint.video.pipeline.VideoFaceEngine`) and
counts them, so tests can check that only crops, not frames, are embedded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pytest

from faceprint import __version__
from faceprint.io.video import VideoFrame
from faceprint.testing import FAKE_THRESHOLD, fake_embedding_spec
from faceprint.types import Detection, Face, Faceprint, RGBImage
from faceprint.video.pipeline import FaceCrop

RED, GREEN, BLUE, YELLOW = (200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)
PALETTE = (RED, GREEN, BLUE, YELLOW)


def colour_print(rgb: Sequence[float]) -> Faceprint:
    spec = fake_embedding_spec()
    return Faceprint(
        vector=np.asarray(rgb, np.float32) + np.float32(1.0),
        model_id=spec.id,
        contract_id=spec.contract_id,
        package_version=__version__,
    )


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _blobs(mask: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Boxes of the separate regions of ``mask`` (split on empty columns, then on empty rows)."""
    boxes = []
    for x0, x1 in _runs(mask.any(axis=0)):
        for y0, y1 in _runs(mask[:, x0:x1].any(axis=1)):
            if mask[y0:y1, x0:x1].sum() >= 80:
                boxes.append((float(x0), float(y0), float(x1), float(y1)))
    return boxes


class ColourVideoEngine:
    """Detects squares of the palette colours (within 45 per channel) and embeds a face as its mean colour."""

    def __init__(self, palette: Sequence[tuple[int, int, int]] = PALETTE) -> None:
        self.palette = [np.asarray(c, np.int16) for c in palette]
        self.detected_frames: list[int] = []
        self.max_sides: list[int] = []
        self.embedded_shapes: list[tuple[int, ...]] = []

    @property
    def contract_id(self) -> str:
        return fake_embedding_spec().contract_id

    @property
    def model_id(self) -> str:
        return fake_embedding_spec().id

    @property
    def default_min_similarity(self) -> float:
        return FAKE_THRESHOLD

    def _faces(self, image: RGBImage) -> list[Face]:
        faces = []
        pixels = image.astype(np.int16)
        for colour in self.palette:
            mask = np.all(np.abs(pixels - colour) <= 45, axis=2)
            if mask.sum() < 80:
                continue
            for box in _blobs(mask):
                faces.append(Face(detection=Detection(bbox_xyxy=box, score=1.0, detector="colour")))
        return faces

    def detect_frames(
        self, frames: Iterable[VideoFrame], *, max_side_px: int, cancel: threading.Event | None = None
    ) -> Iterator[tuple[VideoFrame, list[Face]]]:
        self.max_sides.append(max_side_px)
        for frame in frames:
            self.detected_frames.append(frame.index)
            yield frame, self._faces(frame.detection_image)

    def embed_crops(self, crops: Sequence[FaceCrop], *, cancel: threading.Event | None = None) -> list[Face | None]:
        out: list[Face | None] = []
        for crop in crops:
            self.embedded_shapes.append(crop.image.shape)
            left, top, right, bottom = (round(v) for v in crop.detection.bbox_xyxy)
            region = crop.image[top:bottom, left:right].reshape(-1, 3).astype(np.float64)
            out.append(Face(detection=crop.detection, faceprint=colour_print(region.mean(axis=0))))
        return out


@pytest.fixture
def colour_engine() -> ColourVideoEngine:
    return ColourVideoEngine()


@pytest.fixture
def make_print() -> object:
    """``make_print(rgb)``: the faceprint the colour engine gives a face of that colour."""
    return colour_print
