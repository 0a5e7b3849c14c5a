"""faceprint: face detection, alignment, faceprints and calibrated comparison, offline.

Example:
    >>> from faceprint import load_image, load_pipeline          # doctest: +SKIP
    >>> pipeline = load_pipeline()                                # doctest: +SKIP
    >>> a, _ = pipeline.embed_largest(load_image("a.jpg"))        # doctest: +SKIP
    >>> b, _ = pipeline.embed_largest(load_image("b.jpg"))        # doctest: +SKIP
    >>> pipeline.compare(a, b).probability                        # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("faceprint")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from faceprint.errors import FaceprintError
from faceprint.io.image import ImageLimits, decode_image, load_image
from faceprint.pipeline import Pipeline, PipelineConfig, load_pipeline
from faceprint.types import Comparison, Detection, Face, Faceprint

__all__ = [
    "Comparison",
    "Detection",
    "Face",
    "Faceprint",
    "FaceprintError",
    "ImageLimits",
    "Pipeline",
    "PipelineConfig",
    "__version__",
    "decode_image",
    "load_image",
    "load_pipeline",
]
