"""dlib's ResNet face descriptor run by dlib itself (the fallback when onnxruntime is absent)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from faceprint.detect.dlib_hog import import_dlib
from faceprint.models.spec import ModelSpec
from faceprint.types import RGBImage


class DlibResnetEmbedder:
    """128-d descriptors from 150x150 dlib chips.

    Example:
        >>> DlibResnetEmbedder(spec, path).embed_chips([chip]).shape  # doctest: +SKIP
        (1, 128)
    """

    def __init__(self, spec: ModelSpec, model_path: Path) -> None:
        self._spec = spec
        self._model = import_dlib().face_recognition_model_v1(str(model_path))

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def backend_name(self) -> str:
        return "dlib"

    def embed_chips(self, chips: Sequence[RGBImage]) -> npt.NDArray[np.float32]:
        dim = self._spec.embedding_dim or 0
        if not chips:
            return np.zeros((0, dim), dtype=np.float32)
        descriptors = self._model.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
        return np.asarray([np.asarray(d) for d in descriptors], dtype=np.float32).reshape(len(chips), dim)
