"""dlib's ResNet face descriptor run by dlib itself (the fallback when onnxruntime is absent).

The prebuilt dlib has no BLAS: about 80 ms per chip on two cores. :class:`OnnxEmbedder.from_dlib_resnet`
computes the same descriptors (max abs difference ~3e-7) several times faster.

Example:
    >>> DlibResnetEmbedder(spec, path).embed_chips([chip]).shape  # doctest: +SKIP
    (1, 128)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from faceprint.detect.dlib_hog import import_dlib
from faceprint.embed.base import check_chips
from faceprint.errors import ModelError, ModelNotFoundError, UsageError
from faceprint.models.spec import ModelSpec
from faceprint.types import RGBImage


class DlibResnetEmbedder:
    """128-d descriptors of 150x150 chips made like ``dlib.get_face_chip`` (padding 0.25).

    Args:
        spec: the ``dlib-resnet-v1`` spec (or one with the same chip size and dimension).
        model_path: ``dlib_face_recognition_resnet_model_v1.dat``, already located and verified.

    Raises:
        BackendUnavailableError: dlib is not installed.
        ModelNotFoundError: ``model_path`` does not exist.
        ModelError: dlib cannot load the file.

    Example:
        >>> embedder = DlibResnetEmbedder(builtin_specs()["dlib-resnet-v1"], path)  # doctest: +SKIP
        >>> embedder.embed_chips(chips).shape                                        # doctest: +SKIP
        (12, 128)
    """

    def __init__(self, spec: ModelSpec, model_path: Path) -> None:
        if spec.task != "embedding" or spec.input_size_wh is None or spec.embedding_dim is None:
            raise UsageError(f"model {spec.id} is not an embedding model")
        self._spec = spec
        self.model_path = model_path
        dlib = import_dlib()
        if not model_path.is_file():
            raise ModelNotFoundError(f"dlib model {model_path} not found", details={"file": str(model_path)})
        try:
            self._model = dlib.face_recognition_model_v1(str(model_path))
        except RuntimeError as err:
            raise ModelError(f"dlib cannot load {model_path}: {err}", details={"file": str(model_path)}) from err
        # dlib's network object keeps per-call buffers, so two threads must not run it at once.
        self._lock = threading.Lock()

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def backend_name(self) -> str:
        return "dlib"

    def embed_chips(self, chips: Sequence[RGBImage]) -> npt.NDArray[np.float32]:
        """``(len(chips), 128)`` float32 descriptors, as ``compute_face_descriptor`` returns them.

        Raises:
            UsageError: a chip is not uint8 RGB of the spec's size.
        """
        dim = int(self._spec.embedding_dim or 0)
        if len(chips) == 0:
            return np.zeros((0, dim), dtype=np.float32)
        check_chips(self._spec, chips)
        batch = [np.ascontiguousarray(chip) for chip in chips]
        with self._lock:
            descriptors = self._model.compute_face_descriptor(batch)
        out = np.asarray([np.asarray(d, dtype=np.float32) for d in descriptors], dtype=np.float32)
        if out.shape != (len(chips), dim):
            raise ModelError(f"dlib returned descriptors of shape {out.shape}, expected ({len(chips)}, {dim})")
        return out
