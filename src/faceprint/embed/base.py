"""The Embedder protocol: aligned chips in, one row of float32 per chip out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from faceprint.errors import UsageError
from faceprint.models.spec import ModelSpec
from faceprint.types import RGBImage


@runtime_checkable
class Embedder(Protocol):
    """Turns aligned chips into embedding vectors.

    ``spec`` fixes the chip size (``spec.input_size_wh``), the alignment template and the contract.
    ``embed_chips`` takes RGB uint8 chips of exactly that size and returns an ``(n, spec.embedding_dim)``
    float32 array (raw, not normalised: comparison normalises).
    """

    @property
    def spec(self) -> ModelSpec: ...

    @property
    def backend_name(self) -> str: ...

    def embed_chips(self, chips: Sequence[RGBImage]) -> npt.NDArray[np.float32]: ...


def check_chips(spec: ModelSpec, chips: Sequence[RGBImage]) -> None:
    """Every chip must be uint8 RGB of exactly the spec's input size (aligned by its template).

    Raises:
        UsageError: naming the first chip that is not.
    """
    width, height = spec.input_size_wh or (0, 0)
    for index, chip in enumerate(chips):
        if chip.dtype != np.uint8 or chip.shape != (height, width, 3):
            raise UsageError(
                f"chip {index} is {chip.dtype} {chip.shape}; {spec.id} needs uint8 ({height}, {width}, 3) RGB",
                details={"index": index, "shape": list(chip.shape), "dtype": str(chip.dtype)},
            )
