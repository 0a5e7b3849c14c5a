"""dlib's MMOD CNN face detector on ONNX Runtime: the same boxes as ``cnn_face_detection_model_v1``, faster.

The network is dlib's ``mmod_human_face_detector.dat`` converted once to ONNX
(:meth:`~faceprint.models.dlib_to_onnx.ConvertedModelCache.mmod`); the tiled pyramid before it and the
decoding and non-max suppression after it are :mod:`faceprint.detect.mmod_decode`.

Example:
    >>> cache = ConvertedModelCache(default_model_dir() / "converted")               # doctest: +SKIP
    >>> detector = OnnxMmodDetector.from_dlib_mmod(Path("mmod_human_face_detector.dat"), cache)  # doctest: +SKIP
    >>> [d.bbox_xyxy for d in detector.detect(image)]                                # doctest: +SKIP
    [(112.0, 68.0, 192.0, 148.0)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from faceprint.detect.dlib_hog import _clip_box
from faceprint.detect.mmod_decode import (
    MmodDetection,
    decode,
    input_plan,
    pyramid_up,
    rect_down,
    rect_up,
    tiled_pyramid,
)
from faceprint.embed.onnx import create_session
from faceprint.errors import ModelError, UsageError
from faceprint.models.dlib_to_onnx import MMOD_PARAMS_KEY, ConvertedModelCache, MmodParams
from faceprint.types import Detection, RGBImage

MAX_UPSAMPLE = 3

MIN_INPUT_PX = 64 * 64
MAX_INPUT_PX = 2_250_000
"""Largest image (after upsampling) the network is run on: 1500 x 1500 px.

The network's activations cost about 125 bytes per input pixel (measured: 850 MB for a 1402 x 1216 photo
upsampled once), so this bounds one call to about 280 MB. Larger inputs are upsampled fewer times, and
when even the photo itself is larger it is downsized first (boxes come back in its pixels); faces of
about 80 px of the network's input are still found.
"""


class OnnxMmodDetector:
    """Finds faces with dlib's MMOD CNN run by ONNX Runtime.

    ``upsample`` works like the second argument of dlib's ``cnn_face_detection_model_v1``: the image is
    doubled that many times first (``pyramid_up``), so faces of ~40 px instead of ~80 px are found, at
    about 4x the cost per step.

    Args:
        model_path: an ONNX file written by :func:`~faceprint.models.dlib_to_onnx.convert_dlib_mmod`
            (its metadata holds the pyramid, windows and NMS settings), already verified.
        upsample: 0-3 doublings before detection.
        adjust_threshold: dlib's ``adjust_threshold``: score cut-off, 0 by default; lower finds more.
        intra_op_threads: threads inside one operator; None means every core this process may use.
        providers: ONNX Runtime execution providers; None means CUDA when available, else CPU.
        allow_spinning: let idle intra-op threads busy-wait; off, because on shared cores spinning
            threads slow down the ones computing (see :class:`~faceprint.embed.onnx.OnnxEmbedder`).
        max_input_px: bound on the pixels the network sees (:data:`MAX_INPUT_PX`); None: unbounded,
            exactly dlib's behaviour at any size.
        bounded_memory: run without ONNX Runtime's memory arena and memory patterns, which keep the
            largest block every input shape needed (each photo has its own): on by default.

    Raises:
        BackendUnavailableError: onnxruntime is not installed.
        ModelNotFoundError: ``model_path`` does not exist.
        ModelError: the file is not a loadable ONNX model converted from an MMOD network.
        UsageError: ``upsample`` or ``intra_op_threads`` out of range.

    Example:
        >>> detector = OnnxMmodDetector(Path("mmod_human_face_detector.onnx"), upsample=1)  # doctest: +SKIP
        >>> detector.detect(image)[0].score                                                 # doctest: +SKIP
        1.04
    """

    def __init__(
        self,
        model_path: Path,
        *,
        upsample: int = 0,
        adjust_threshold: float = 0.0,
        intra_op_threads: int | None = None,
        providers: Sequence[str] | None = None,
        allow_spinning: bool = False,
        max_input_px: int | None = MAX_INPUT_PX,
        bounded_memory: bool = True,
    ) -> None:
        if upsample < 0 or upsample > MAX_UPSAMPLE:
            raise UsageError(f"upsample must be 0-{MAX_UPSAMPLE}, got {upsample}")
        if intra_op_threads is not None and intra_op_threads < 1:
            raise UsageError(f"intra_op_threads must be at least 1, got {intra_op_threads}")
        if max_input_px is not None and max_input_px < MIN_INPUT_PX:
            raise UsageError(f"max_input_px must be at least {MIN_INPUT_PX}, got {max_input_px}")
        self.upsample = upsample
        self.adjust_threshold = adjust_threshold
        self.model_path = model_path
        self.max_input_px = max_input_px
        self._session = create_session(
            model_path,
            intra_op_threads=intra_op_threads,
            providers=providers,
            allow_spinning=allow_spinning,
            variable_shapes=bounded_memory,
        )

        metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        if MMOD_PARAMS_KEY not in metadata:
            raise ModelError(
                f"{model_path} has no {MMOD_PARAMS_KEY!r} metadata: not an MMOD detector converted by faceprint",
                details={"file": str(model_path)},
            )
        self.params = MmodParams.from_json(metadata[MMOD_PARAMS_KEY])
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{model_path}: an MMOD graph has one input and one output")
        self._input_name = inputs[0].name
        self._output_name = outputs[0].name

    @classmethod
    def from_dlib_mmod(
        cls,
        dat_path: Path,
        cache: ConvertedModelCache,
        *,
        source_sha256: str | None = None,
        upsample: int = 0,
        adjust_threshold: float = 0.0,
        intra_op_threads: int | None = None,
        providers: Sequence[str] | None = None,
        allow_spinning: bool = False,
        max_input_px: int | None = MAX_INPUT_PX,
        bounded_memory: bool = True,
    ) -> OnnxMmodDetector:
        """dlib's ``mmod_human_face_detector.dat``, converted to ONNX through ``cache`` (once) and loaded.

        Args:
            dat_path: the dlib file, already located and verified (``ModelStore.path_for``).
            cache: where conversions are kept.
            source_sha256: the verified digest of ``dat_path`` (saves hashing it again).
            upsample: see the class.
            adjust_threshold: see the class.
            intra_op_threads: see the class.
            providers: see the class.
            allow_spinning: see the class.
            max_input_px: see the class.
            bounded_memory: see the class.
        """
        onnx_path = cache.mmod(dat_path, source_sha256=source_sha256)
        return cls(
            onnx_path,
            upsample=upsample,
            adjust_threshold=adjust_threshold,
            intra_op_threads=intra_op_threads,
            providers=providers,
            allow_spinning=allow_spinning,
            max_input_px=max_input_px,
            bounded_memory=bounded_memory,
        )

    @property
    def name(self) -> str:
        return f"dlib-mmod-onnx@{self.upsample}"

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses, best first."""
        return list(self._session.get_providers())

    def plan(self, height: int, width: int) -> tuple[int, float]:
        """The upsampling and downsizing ``detect_rects`` uses for an image: ``(upsample, scale)``.

        ``upsample`` is the configured one unless the doubled image would exceed ``max_input_px``;
        ``scale`` is below 1 only when the image itself exceeds it.

        Example:
            >>> detector = OnnxMmodDetector(Path("mmod_human_face_detector.onnx"), upsample=1)  # doctest: +SKIP
            >>> detector.plan(250, 250), detector.plan(1000, 1000), detector.plan(3000, 3000)  # doctest: +SKIP
            ((1, 1.0), (0, 1.0), (0, 0.5))
        """
        return input_plan(height, width, self.upsample, self.max_input_px)

    def detect_rects(self, image: RGBImage) -> list[MmodDetection]:
        """What ``dlib.cnn_face_detection_model_v1(path)(image, upsample)`` returns, as dlib rectangles.

        Rectangles are inclusive and may stick out of the image, like dlib's; best first. Images larger
        than ``max_input_px`` are upsampled less, or downsized (see :meth:`plan`).

        Raises:
            UsageError: ``image`` is not an ``(h, w, 3)`` uint8 array.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise UsageError(f"expected an (h, w, 3) uint8 RGB image, got {image.dtype} {image.shape}")
        height, width = image.shape[:2]
        if height == 0 or width == 0:
            return []
        upsample, scale = self.plan(height, width)
        if scale < 1.0:
            small_wh = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
            small = np.asarray(Image.fromarray(image).resize(small_wh, Image.Resampling.BILINEAR, reducing_gap=2.0))
            back_x, back_y = width / small_wh[0], height / small_wh[1]
            return [
                MmodDetection(
                    rect=rect_up(d.rect, back_x, back_y),
                    score=d.score,
                    window=d.window,
                    label=d.label,
                )
                for d in self._run(np.ascontiguousarray(small), 0)
            ]
        return self._run(image, upsample)

    def _run(self, image: RGBImage, upsample: int) -> list[MmodDetection]:
        scaled = image
        for _ in range(upsample):
            scaled = pyramid_up(scaled)
        tensor, rects = tiled_pyramid(np.ascontiguousarray(scaled), self.params)
        (scores,) = self._session.run([self._output_name], {self._input_name: tensor})
        found = decode(np.asarray(scores, np.float32), rects, self.params, adjust_threshold=self.adjust_threshold)
        if upsample == 0:
            return found
        return [
            MmodDetection(rect=rect_down(d.rect, upsample), score=d.score, window=d.window, label=d.label)
            for d in found
        ]

    def detect(self, image: RGBImage) -> list[Detection]:
        """Faces in ``image``, best first; boxes are ``bbox_xyxy`` (right/bottom exclusive), clipped to it."""
        height, width = image.shape[:2]
        detections = []
        for found in self.detect_rects(image):
            left, top, right, bottom = found.rect
            box = _clip_box((left, top, right + 1, bottom + 1), width, height)
            if box is not None:
                detections.append(Detection(bbox_xyxy=box, score=found.score, detector=self.name))
        return sorted(detections, key=lambda d: d.score, reverse=True)
