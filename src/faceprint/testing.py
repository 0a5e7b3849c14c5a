"""Small fakes for tests: a pipeline that needs no weights, and images it understands.

:class:`FakePipeline` implements what the engine uses of :class:`faceprint.pipeline.Pipeline`
(``spec``, ``comparator``, ``config``, ``detect_faces``, ``extract_aligned_face``, ``embed_batch``,
``embed_faces``, ``embed_main_face``, ``compare``) with the same semantics, "detecting" faces by rules:

- an image whose pixels are all the same has **no face**;
- a **group photo** (:func:`make_group_png`): an image whose outer frame of pixels is one colour, with
  something else inside, holds one face per blob of other colours (the blob's bounding box);
- an image at least twice as wide as tall holds **two faces**: the left square and the rest;
- any other image holds one face, the whole picture.

Faces come with five fake landmarks (eye corners and nose, placed in the box like dlib's 5 points), and
are ordered by the pipeline's own rule (:func:`faceprint.pipeline.rank_faces`): ``"primary"`` puts the
most prominent face first (size discounted off-centre), ``"largest"`` the largest. A face's chip is its
box resized to 8x8 (box filter); its vector is the chip's mean R, G, B plus 1, so two pictures of the
same colour "show the same person" (similarity 1) and a red and a blue picture do not.

It counts its calls (``embed_calls``: images detected, ``embedded_images``, ``chips_embedded``,
``detection_calls``), so tests can prove an image was analysed once and see which pass found it.

Example:
    >>> from faceprint.io.image import decode_image
    >>> pipeline = FakePipeline()
    >>> red = pipeline.embed_faces(decode_image(make_face_png((200, 20, 20))))
    >>> red_again = pipeline.embed_faces(decode_image(make_face_png((200, 20, 20), size_wh=(40, 30))))
    >>> pipeline.compare(red[0].faceprint, red_again[0].faceprint).is_match
    True
    >>> pipeline.embed_faces(decode_image(make_blank_png()))
    []
    >>> pipeline.embed_calls
    3

    Primary and largest differ on a group photo whose largest face is off-centre:

    >>> group = decode_image(make_off_centre_group_png())
    >>> [round(d.width) for d in FakePipeline().detect_faces(group)]
    [48, 64]
    >>> [round(d.width) for d in FakePipeline(PipelineConfig(face_selection="largest")).detect_faces(group)]
    [64, 48]
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image

from faceprint import __version__
from faceprint.compare import Comparator
from faceprint.embed.base import check_chips
from faceprint.errors import ContractMismatchError, UsageError
from faceprint.models.spec import Calibration, ModelFile, ModelSpec
from faceprint.pipeline import MIN_DETECT_SIDE_PX, FaceSelection, PipelineConfig, rank_faces
from faceprint.types import Comparison, Detection, Face, Faceprint, RGBImage

FAKE_MODEL_ID = "fake-colour-v1"
FAKE_THRESHOLD = 0.95
FAKE_CHIP_PX = 8
FAKE_DETECTOR = "fake"
FAKE_FAST_DETECTOR = "fake-fast"

# Where the fake's five landmarks sit in a face box, as fractions of its width and height, in dlib's
# 5-point order (one eye's corners, the other eye's, the nose base).
_LANDMARKS_FRACTION_XY = ((0.8, 0.4), (0.6, 0.4), (0.2, 0.4), (0.4, 0.4), (0.5, 0.7))


def fake_embedding_spec() -> ModelSpec:
    """The spec of the fake colour "model" (a new object each call: specs hold dicts)."""
    return ModelSpec(
        id=FAKE_MODEL_ID,
        task="embedding",
        backend="onnx",
        files=(ModelFile("fake-colour.onnx", sha256="0" * 64, size_bytes=1),),
        input_size_wh=(FAKE_CHIP_PX, FAKE_CHIP_PX),
        align_template="none",
        embedding_dim=3,
        default_threshold=FAKE_THRESHOLD,
        calibration=Calibration(slope=60.0, intercept=-60.0 * FAKE_THRESHOLD, provenance={"method": "fake"}),
        license="test-only",
        description="mean colour of the face region; for tests only",
    )


def fake_landmarks(bbox_xyxy: tuple[float, float, float, float]) -> tuple[tuple[float, float], ...]:
    """The five landmarks the fake puts in a face box (see the module docstring).

    Example:
        >>> fake_landmarks((0.0, 0.0, 10.0, 10.0))[4]
        (5.0, 7.0)
    """
    left, top, right, bottom = bbox_xyxy
    width, height = right - left, bottom - top
    return tuple((left + fx * width, top + fy * height) for fx, fy in _LANDMARKS_FRACTION_XY)


class FakeLandmarker:
    """Landmarks by :func:`fake_landmarks` (the engine adds them to given boxes through ``landmarker``)."""

    @property
    def name(self) -> str:
        return "fake-landmarks-5"

    def landmarks(self, image: RGBImage, detection: Detection) -> tuple[tuple[float, float], ...]:
        return fake_landmarks(detection.bbox_xyxy)


@dataclass(frozen=True, slots=True)
class FakeDetectionCall:
    """One detection pass of :class:`FakePipeline`: what was asked and which pass found the faces."""

    cheap_first: bool
    selection: FaceSelection
    max_side_px: int | None
    passes: tuple[Literal["fast", "full"], ...]
    faces_found: int


class FakePipeline:
    """A deterministic, weight-free stand-in for :class:`faceprint.pipeline.Pipeline` (see module doc).

    Args:
        config: Recorded (``self.config``) so tests can check what a job passed, e.g. ``intra_op_threads``;
            its ``face_selection`` orders the faces (and ``detect_faces(selection=...)`` per call).
        threshold: Operating threshold as a minimum cosine similarity.
        fast_min_face_px: the cheap first pass (``cheap_first``, ``largest_only``, ``embed_main_face``)
            sees only faces whose box is at least this many pixels on its shorter side, like HOG without
            upsampling misses small faces; when it sees none, the full pass finds every face. None: the
            cheap pass sees every face.

    Example:
        >>> FakePipeline().spec.id
        'fake-colour-v1'
    """

    def __init__(
        self,
        config: PipelineConfig | None = None,
        *,
        threshold: float = FAKE_THRESHOLD,
        fast_min_face_px: int | None = None,
    ) -> None:
        self.config = config if config is not None else PipelineConfig()
        self.spec = fake_embedding_spec()
        self.comparator = Comparator(self.spec, threshold=threshold)
        self.landmarker = FakeLandmarker()
        self.fast_min_face_px = fast_min_face_px
        self.model_options: dict[str, str] = {"detector": FAKE_DETECTOR}
        self.embed_calls = 0
        """Images detected (one per ``detect_faces``/``embed_faces``/``embed_main_face`` call)."""
        self.embedded_images: list[tuple[int, int, int, int]] = []
        """``(height, width, sum of pixels mod 2**31, faces found)`` per image detected, in call order."""
        self.chips_embedded = 0
        self.detection_calls: list[FakeDetectionCall] = []

    # --- detection -------------------------------------------------------------------------------------

    def detect_faces(
        self,
        image: RGBImage,
        *,
        largest_only: bool = False,
        cheap_first: bool = False,
        selection: FaceSelection | None = None,
        max_side_px: int | None = None,
    ) -> list[Detection]:
        """Faces by the module's rules, with landmarks, the selected face first (like the real pipeline)."""
        if selection is not None and selection not in ("primary", "largest"):
            raise UsageError(f"unknown selection {selection!r}; choose one of primary, largest")
        if max_side_px is not None and max_side_px < MIN_DETECT_SIDE_PX:
            raise UsageError(f"max_side_px must be at least {MIN_DETECT_SIDE_PX}, got {max_side_px}")
        ranked = self._detect(
            image, cheap_first=cheap_first or largest_only, selection=selection, max_side_px=max_side_px
        )
        return ranked[:1] if largest_only else ranked

    def _detect(
        self,
        image: RGBImage,
        *,
        cheap_first: bool,
        selection: FaceSelection | None = None,
        max_side_px: int | None = None,
    ) -> list[Detection]:
        self.embed_calls += 1
        height, width = image.shape[:2]
        boxes = fake_face_boxes(image)
        passes: list[Literal["fast", "full"]] = []
        found: list[Detection] = []
        if cheap_first:
            passes.append("fast")
            minimum = 0 if self.fast_min_face_px is None else self.fast_min_face_px
            found = [
                _detection(box, FAKE_FAST_DETECTOR) for box in boxes if min(box[2] - box[0], box[3] - box[1]) >= minimum
            ]
        if not found:
            passes.append("full")
            found = [_detection(box, FAKE_DETECTOR) for box in boxes]
        chosen: FaceSelection = self.config.face_selection if selection is None else selection
        ranked = rank_faces(found, (width, height), chosen)
        checksum = int(image.sum(dtype=np.int64) % (2**31))
        self.embedded_images.append((height, width, checksum, len(ranked)))
        self.detection_calls.append(
            FakeDetectionCall(
                cheap_first=cheap_first,
                selection=chosen,
                max_side_px=max_side_px,
                passes=tuple(passes),
                faces_found=len(ranked),
            )
        )
        return ranked

    # --- alignment and embedding -----------------------------------------------------------------------

    def extract_aligned_face(self, image: RGBImage, detection: Detection, *, size: int | None = None) -> RGBImage:
        """The face box resized to ``size`` (8, the fake model's input, by default) with a box filter."""
        side = FAKE_CHIP_PX if size is None else size
        if side < 1:
            raise UsageError(f"chip size must be positive, got {size}")
        height, width = image.shape[:2]
        left, top, right, bottom = (round(v) for v in detection.bbox_xyxy)
        left, top = min(max(left, 0), width - 1), min(max(top, 0), height - 1)
        right, bottom = min(max(right, left + 1), width), min(max(bottom, top + 1), height)
        region = np.ascontiguousarray(image[top:bottom, left:right])
        chip = Image.fromarray(region).resize((side, side), Image.Resampling.BOX)
        return np.ascontiguousarray(np.asarray(chip, dtype=np.uint8))

    def embed_batch(self, chips: Sequence[RGBImage]) -> list[Faceprint]:
        """One faceprint per chip: its mean R, G, B plus 1 (chips must be 8x8, like a real model's size)."""
        check_chips(self.spec, chips)
        self.chips_embedded += len(chips)
        return [self._faceprint(chip.reshape(-1, 3).astype(np.float64).mean(axis=0)) for chip in chips]

    def embed(self, chip: RGBImage) -> Faceprint:
        return self.embed_batch([chip])[0]

    def _faceprint(self, mean_rgb: npt.NDArray[np.float64]) -> Faceprint:
        return Faceprint(
            vector=mean_rgb.astype(np.float32) + np.float32(1.0),
            model_id=self.spec.id,
            contract_id=self.spec.contract_id,
            package_version=__version__,
            model_options=dict(self.model_options),
        )

    def embed_faces(self, image: RGBImage, *, largest_only: bool = False) -> list[Face]:
        """Detect, align and embed every face (or only the selected one), the selected face first."""
        detections = self._detect(image, cheap_first=largest_only)
        if largest_only:
            detections = detections[:1]
        faceprints = self.embed_batch([self.extract_aligned_face(image, d) for d in detections])
        return [Face(detection=d, faceprint=f) for d, f in zip(detections, faceprints, strict=True)]

    def embed_main_face(self, image: RGBImage) -> tuple[Face | None, int]:
        """The selected face of the cheap-first pass, embedded, and how many faces that pass found."""
        ranked = self._detect(image, cheap_first=True)
        if not ranked:
            return None, 0
        faceprint = self.embed(self.extract_aligned_face(image, ranked[0]))
        return Face(detection=ranked[0], faceprint=faceprint), len(ranked)

    def embed_largest(self, image: RGBImage) -> tuple[Faceprint | None, bool]:
        face, _ = self.embed_main_face(image)
        return (None, False) if face is None else (face.faceprint, True)

    # --- comparison ------------------------------------------------------------------------------------

    def compare(self, a: Faceprint, b: Faceprint) -> Comparison:
        if a.contract_id != self.spec.contract_id:
            raise ContractMismatchError(
                f"faceprint of contract {a.contract_id!r} given to a pipeline of {self.spec.contract_id!r}",
                details={"expected": self.spec.contract_id, "actual": a.contract_id},
            )
        return self.comparator.compare(a, b)


def _detection(box: tuple[int, int, int, int], detector: str) -> Detection:
    bbox = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
    return Detection(bbox_xyxy=bbox, score=1.0, detector=detector, landmarks_xy=fake_landmarks(bbox))


def fake_face_boxes(image: RGBImage) -> list[tuple[int, int, int, int]]:
    """The face boxes ``(left, top, right, bottom)`` the fake finds in ``image`` (see the module rules).

    Example:
        >>> from faceprint.io.image import decode_image
        >>> fake_face_boxes(decode_image(make_two_face_png((200, 20, 20), (20, 20, 200))))
        [(0, 0, 20, 20), (20, 0, 50, 20)]
    """
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        return []
    pixels = image.reshape(-1, image.shape[2])
    if bool(np.all(pixels == pixels[0])):
        return []
    group = _group_boxes(image)
    if group is not None:
        return group
    regions = [(0, width)] if width < 2 * height else [(0, height), (height, width)]
    boxes = []
    for left, right in regions:
        region = image[:, left:right].reshape(-1, image.shape[2])
        if region.size and not bool(np.all(region == region[0])):
            boxes.append((left, 0, right, height))
    return boxes


def _group_boxes(image: RGBImage) -> list[tuple[int, int, int, int]] | None:
    """Blobs inside a one-colour frame (recursive XY cut on rows/columns of frame colour); None: no frame."""
    height, width = image.shape[:2]
    if height < 3 or width < 3:
        return None
    frame_colour = image[0, 0]
    frame = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    if not bool(np.all(frame == frame_colour)):
        return None
    mask = np.any(image != frame_colour, axis=2)
    boxes: list[tuple[int, int, int, int]] = []
    _cut(mask, 0, 0, boxes)
    return sorted(boxes, key=lambda b: (b[1], b[0]))


def _runs(flags: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of True."""
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _cut(mask: npt.NDArray[np.bool_], top: int, left: int, boxes: list[tuple[int, int, int, int]]) -> None:
    rows = _runs(np.asarray(mask.any(axis=1), dtype=np.bool_))
    cols = _runs(np.asarray(mask.any(axis=0), dtype=np.bool_))
    if not rows:
        return
    if len(cols) > 1:
        for start, stop in cols:
            _cut(mask[:, start:stop], top, left + start, boxes)
    elif len(rows) > 1:
        for start, stop in rows:
            _cut(mask[start:stop], top + start, left, boxes)
    else:
        (row_start, row_stop), (col_start, col_stop) = rows[0], cols[0]
        boxes.append((left + col_start, top + row_start, left + col_stop, top + row_stop))


def fake_pipeline_factory(config: PipelineConfig) -> FakePipeline:
    """A picklable factory (module-level), so worker processes can build their own fake."""
    return FakePipeline(config)


class CrashingPipeline(FakePipeline):
    """A fake whose process dies while detecting, like a native crash or the kernel's out-of-memory kill."""

    def _detect(
        self,
        image: RGBImage,
        *,
        cheap_first: bool,
        selection: FaceSelection | None = None,
        max_side_px: int | None = None,
    ) -> list[Detection]:
        os._exit(70)


def crashing_pipeline_factory(config: PipelineConfig) -> FakePipeline:
    """Picklable factory of :class:`CrashingPipeline`; use it only with worker processes (it kills its process)."""
    return CrashingPipeline(config)


def make_face_png(rgb: tuple[int, int, int], *, size_wh: tuple[int, int] = (32, 32)) -> bytes:
    """A PNG the fake pipeline sees one face in (two if at least twice as wide as tall): ``rgb`` plus a
    faint checkerboard (so it is not uniform) whose mean is ``rgb`` when both sides are even (its 8x8
    chip's mean too, when both sides are multiples of 8).

    Example:
        >>> make_face_png((10, 20, 30))[:4]
        b'\\x89PNG'
    """
    width, height = size_wh
    base = np.empty((height, width, 3), np.int16)
    base[:, :] = rgb
    checker = ((np.indices((height, width)).sum(axis=0) % 2) * 2 - 1).astype(np.int16)[:, :, None] * 4
    pixels = np.clip(base + checker, 0, 255).astype(np.uint8)
    return _png(pixels)


def make_two_face_png(left_rgb: tuple[int, int, int], right_rgb: tuple[int, int, int], *, height: int = 20) -> bytes:
    """A PNG with two fake faces: a ``height`` square of ``left_rgb`` and a wider ``right_rgb`` area.

    The right face is 1.5 squares wide, so it is the largest.
    """
    left = np.asarray(Image.open(io.BytesIO(make_face_png(left_rgb, size_wh=(height, height)))))
    right_width = height * 3 // 2
    right = np.asarray(Image.open(io.BytesIO(make_face_png(right_rgb, size_wh=(right_width, height)))))
    return _png(np.ascontiguousarray(np.concatenate([left, right], axis=1)))


def make_group_png(
    faces: Sequence[tuple[tuple[int, int, int], tuple[int, int, int, int]]],
    *,
    size_wh: tuple[int, int] = (200, 120),
    background: tuple[int, int, int] = (0, 0, 0),
) -> bytes:
    """A "group photo" for the fake pipeline: faces ``(rgb, (left, top, right, bottom))`` on a plain background.

    Each face is painted like :func:`make_face_png` (its colour plus a faint checkerboard). Faces must keep
    off the outer pixel frame and must not touch each other (the fake separates them along background rows
    and columns).

    Raises:
        ValueError: a face leaves the image or touches its frame.

    Example:
        >>> from faceprint.io.image import decode_image
        >>> png = make_group_png([((200, 20, 20), (10, 10, 40, 40)), ((20, 20, 200), (60, 20, 80, 40))])
        >>> fake_face_boxes(decode_image(png))
        [(10, 10, 40, 40), (60, 20, 80, 40)]
    """
    width, height = size_wh
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:, :] = background
    for rgb, (left, top, right, bottom) in faces:
        if not (0 < left < right < width and 0 < top < bottom < height):
            raise ValueError(f"face box {(left, top, right, bottom)} must lie inside the frame of a {size_wh} image")
        face = np.asarray(Image.open(io.BytesIO(make_face_png(rgb, size_wh=(right - left, bottom - top)))))
        pixels[top:bottom, left:right] = face
    return _png(pixels)


def make_off_centre_group_png(
    *, big_rgb: tuple[int, int, int] = (200, 20, 20), centred_rgb: tuple[int, int, int] = (20, 20, 200)
) -> bytes:
    """A 240x160 group photo where primary and largest disagree.

    The largest face (a 64 px box, ``big_rgb``) sits in the top-left corner; a smaller one (48 px,
    ``centred_rgb``) is in the centre. ``"largest"`` picks the big one; ``"primary"`` the centred one, whose
    prominence (landmark span times the off-centre discount) is 28.8 * 1.0 against 38.4 * 0.56.
    """
    return make_group_png(
        [(big_rgb, (4, 4, 68, 68)), (centred_rgb, (96, 56, 144, 104))],
        size_wh=(240, 160),
    )


def make_blank_png(*, size_wh: tuple[int, int] = (32, 32), gray: int = 128) -> bytes:
    """A uniform grey PNG: the fake pipeline finds no face in it."""
    width, height = size_wh
    return _png(np.full((height, width, 3), gray, np.uint8))


def _png(pixels: RGBImage) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def tiny_embedder_onnx(weights: npt.NDArray[np.float32], *, name: str = "tiny") -> bytes:
    """A tiny ONNX embedding model: ``(n, 3, 112, 112)`` -> 8x8 average pool -> flatten (588) -> MatMul.

    ``weights`` is ``(588, dim)``; the output is ``(n, dim)``. Tests use it to run the real ONNX code paths
    (registry, OnnxEmbedder, pipeline) without any downloaded model.
    """
    from onnx import TensorProto, helper, numpy_helper

    dim = int(weights.shape[1])
    nodes = [
        helper.make_node("AveragePool", ["x"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 112, 112])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", dim])],
        initializer=[numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


class ScriptedProgram:
    """A weight-free :class:`~faceprint.execute.base.WorkerProgram` for executor tests (picklable).

    A task is a string: ``"die"`` kills the worker process (like a native crash), ``"die-once:<path>"``
    kills it only while ``<path>`` does not exist yet (and creates it: a crash that a retry survives),
    ``"sleep:<s>"`` sleeps, ``"model"`` raises a model error, ``"bug"`` raises a plain exception; any other
    task returns ``(task, worker pid)``.

    Example:
        >>> ScriptedProgram().run(None, "hello")[0]
        'hello'
    """

    def build(self) -> None:
        return None

    def run(self, state: None, task: str) -> tuple[str, int]:
        import time

        from faceprint.errors import ModelNotFoundError

        if task == "die":
            os._exit(9)
        if task.startswith("die-once:"):
            marker = task.split(":", 1)[1]
            if not os.path.exists(marker):
                with open(marker, "w"):
                    pass
                os._exit(9)
        if task.startswith("sleep:"):
            time.sleep(float(task.split(":", 1)[1]))
        if task == "model":
            raise ModelNotFoundError("weights not found")
        if task == "bug":
            raise RuntimeError("a bug")
        return task, os.getpid()

    def failed(self, task: str, message: str, *, crashed: bool) -> tuple[str, int]:
        return ("crashed: " if crashed else "failed: ") + message, -1
