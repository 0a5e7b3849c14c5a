"""A detector built only when a photo first reaches it: fallback stages cost nothing until they are needed.

The MMOD CNN is the cascade's fallback for faces HOG misses (profiles, small or dark faces). Building it
means an ONNX Runtime session (or dlib's network) and its memory, for every worker, also when every photo
is found by HOG. :class:`LazyDetector` knows its name up front (the cascade's and the faceprints' model
options need it) and builds the real detector on the first :meth:`~LazyDetector.detect`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from faceprint.detect.base import Detector
from faceprint.errors import InvalidArgumentError
from faceprint.types import Detection, RGBImage


class LazyDetector:
    """Stands for the detector ``build()`` returns, and builds it on first use (once, thread-safely).

    Args:
        name: the name the built detector will have (checked when it is built).
        build: makes the detector; its errors surface on the first :meth:`detect`.

    Raises:
        ValueError: (on first use) the built detector's name is not ``name``.

    Example:
        >>> from faceprint.detect.center import CenterCropDetector
        >>> lazy = LazyDetector("center-crop", CenterCropDetector)
        >>> lazy.name, lazy.built
        ('center-crop', None)
        >>> import numpy as np
        >>> len(lazy.detect(np.zeros((100, 100, 3), np.uint8))), lazy.built is not None
        (1, True)
    """

    def __init__(self, name: str, build: Callable[[], Detector]) -> None:
        self._name = name
        self._build = build
        self._detector: Detector | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def built(self) -> Detector | None:
        """The real detector once something was detected with it, else None."""
        return self._detector

    def get(self) -> Detector:
        """The real detector, built now if it was not yet."""
        detector = self._detector
        if detector is not None:
            return detector
        with self._lock:
            if self._detector is None:
                built = self._build()
                if built.name != self._name:
                    raise InvalidArgumentError(f"lazy detector {self._name!r} built a detector named {built.name!r}")
                self._detector = built
            return self._detector

    def detect(self, image: RGBImage) -> list[Detection]:
        return self.get().detect(image)
