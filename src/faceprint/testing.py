"""Small fakes for tests: a pipeline that needs no weights, and images it understands.

:class:`FakePipeline` implements what the batch jobs use of :class:`faceprint.pipeline.Pipeline`
(``spec``, ``comparator``, ``embed_faces``, ``compare``) with an "embedding" computed from colour:

- an image whose pixels are all the same has **no face**;
- an image at least twice as wide as tall holds **two faces**: the left square and the rest (sorted by
  area, largest first, like the real pipeline); any other image holds one face, the whole picture;
- a face's vector is the mean R, G, B of its region, so two pictures of the same colour "show the same
  person" (similarity 1) and a red and a blue picture do not (similarity near 0).

It counts its calls (``embed_calls``, ``embedded_images``), so tests can prove an image was embedded once.

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
"""

from __future__ import annotations

import io
import os

import numpy as np
import numpy.typing as npt
from PIL import Image

from faceprint import __version__
from faceprint.compare import Comparator
from faceprint.models.spec import Calibration, ModelFile, ModelSpec
from faceprint.pipeline import PipelineConfig
from faceprint.types import Comparison, Detection, Face, Faceprint, RGBImage

FAKE_MODEL_ID = "fake-colour-v1"
FAKE_THRESHOLD = 0.95


def fake_embedding_spec() -> ModelSpec:
    """The spec of the fake colour "model" (a new object each call: specs hold dicts)."""
    return ModelSpec(
        id=FAKE_MODEL_ID,
        task="embedding",
        backend="onnx",
        files=(ModelFile("fake-colour.onnx", sha256="0" * 64, size_bytes=1),),
        input_size_wh=(8, 8),
        align_template="none",
        embedding_dim=3,
        default_threshold=FAKE_THRESHOLD,
        calibration=Calibration(slope=60.0, intercept=-60.0 * FAKE_THRESHOLD, provenance={"method": "fake"}),
        license="test-only",
        description="mean colour of the face region; for tests only",
    )


class FakePipeline:
    """A deterministic, weight-free stand-in for :class:`faceprint.pipeline.Pipeline` (see module doc).

    Args:
        config: Recorded (``self.config``) so tests can check what a job passed, e.g. ``intra_op_threads``.
        threshold: Operating threshold as a minimum cosine similarity.

    Example:
        >>> FakePipeline().spec.id
        'fake-colour-v1'
    """

    def __init__(self, config: PipelineConfig | None = None, *, threshold: float = FAKE_THRESHOLD) -> None:
        self.config = config if config is not None else PipelineConfig()
        self.spec = fake_embedding_spec()
        self.comparator = Comparator(self.spec, threshold=threshold)
        self.embed_calls = 0
        self.embedded_images: list[tuple[int, int, int, int]] = []
        """``(height, width, sum of pixels mod 2**31, faces found)`` per call, in call order."""

    def embed_main_face(self, image: RGBImage) -> tuple[Face | None, int]:
        """The first face of :meth:`embed_faces` and how many there were (like the real pipeline)."""
        faces = self.embed_faces(image)
        return (faces[0] if faces else None), len(faces)

    def embed_faces(self, image: RGBImage, *, largest_only: bool = False) -> list[Face]:
        """Fake detection + embedding: see the module docstring for the rules."""
        self.embed_calls += 1
        height, width = image.shape[:2]
        regions: list[tuple[int, int]] = [(0, width)]
        if width >= 2 * height:
            regions = [(0, height), (height, width)]
        faces: list[Face] = []
        for left, right in regions:
            region = image[:, left:right].reshape(-1, 3)
            if region.size == 0 or bool(np.all(region == region[0])):
                continue
            vector = region.astype(np.float64).mean(axis=0).astype(np.float32) + np.float32(1.0)
            detection = Detection(bbox_xyxy=(float(left), 0.0, float(right), float(height)), score=1.0, detector="fake")
            faceprint = Faceprint(
                vector=vector,
                model_id=self.spec.id,
                contract_id=self.spec.contract_id,
                package_version=__version__,
                model_options={"detector": "fake"},
            )
            faces.append(Face(detection=detection, faceprint=faceprint))
        faces.sort(key=lambda face: face.detection.area, reverse=True)
        if largest_only:
            faces = faces[:1]
        checksum = int(image.sum(dtype=np.int64) % (2**31))
        self.embedded_images.append((height, width, checksum, len(faces)))
        return faces

    def compare(self, a: Faceprint, b: Faceprint) -> Comparison:
        return self.comparator.compare(a, b)


def fake_pipeline_factory(config: PipelineConfig) -> FakePipeline:
    """A picklable factory (module-level), so worker processes can build their own fake."""
    return FakePipeline(config)


class CrashingPipeline(FakePipeline):
    """A fake whose process dies while embedding, like a native crash or the kernel's out-of-memory kill."""

    def embed_faces(self, image: RGBImage, *, largest_only: bool = False) -> list[Face]:
        os._exit(70)


def crashing_pipeline_factory(config: PipelineConfig) -> FakePipeline:
    """Picklable factory of :class:`CrashingPipeline`; use it only with worker processes (it kills its process)."""
    return CrashingPipeline(config)


def make_face_png(rgb: tuple[int, int, int], *, size_wh: tuple[int, int] = (32, 32)) -> bytes:
    """A PNG the fake pipeline sees one face in (two if at least twice as wide as tall): ``rgb`` plus a
    faint checkerboard (so it is not uniform) whose mean is ``rgb`` when both sides are even.

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
