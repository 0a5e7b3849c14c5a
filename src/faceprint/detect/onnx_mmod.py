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

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from faceprint.detect.dlib_hog import _clip_box
from faceprint.detect.mmod_decode import MmodDetection, decode, pyramid_up, rect_down, tiled_pyramid
from faceprint.embed.onnx import create_session
from faceprint.errors import ModelError, UsageError
from faceprint.models.dlib_to_onnx import MMOD_PARAMS_KEY, ConvertedModelCache, MmodParams
from faceprint.types import Detection, RGBImage

MAX_UPSAMPLE = 3


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
    ) -> None:
        if upsample < 0 or upsample > MAX_UPSAMPLE:
            raise UsageError(f"upsample must be 0-{MAX_UPSAMPLE}, got {upsample}")
        if intra_op_threads is not None and intra_op_threads < 1:
            raise UsageError(f"intra_op_threads must be at least 1, got {intra_op_threads}")
        self.upsample = upsample
        self.adjust_threshold = adjust_threshold
        self.model_path = model_path
        self._session = create_session(
            model_path, intra_op_threads=intra_op_threads, providers=providers, allow_spinning=allow_spinning
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
        """
        onnx_path = cache.mmod(dat_path, source_sha256=source_sha256)
        return cls(
            onnx_path,
            upsample=upsample,
            adjust_threshold=adjust_threshold,
            intra_op_threads=intra_op_threads,
            providers=providers,
            allow_spinning=allow_spinning,
        )

    @property
    def name(self) -> str:
        return f"dlib-mmod-onnx@{self.upsample}"

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses, best first."""
        return list(self._session.get_providers())

    def detect_rects(self, image: RGBImage) -> list[MmodDetection]:
        """What ``dlib.cnn_face_detection_model_v1(path)(image, upsample)`` returns, as dlib rectangles.

        Rectangles are inclusive and may stick out of the image, like dlib's; best first.

        Raises:
            UsageError: ``image`` is not an ``(h, w, 3)`` uint8 array.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise UsageError(f"expected an (h, w, 3) uint8 RGB image, got {image.dtype} {image.shape}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            return []
        scaled = image
        for _ in range(self.upsample):
            scaled = pyramid_up(scaled)
        tensor, rects = tiled_pyramid(np.ascontiguousarray(scaled), self.params)
        (scores,) = self._session.run([self._output_name], {self._input_name: tensor})
        found = decode(np.asarray(scores, np.float32), rects, self.params, adjust_threshold=self.adjust_threshold)
        if self.upsample == 0:
            return found
        return [
            MmodDetection(rect=rect_down(d.rect, self.upsample), score=d.score, window=d.window, label=d.label)
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
