"""faceprint: face detection, alignment, faceprints and calibrated comparison, offline.

Example:
    >>> from faceprint import Analyzer, AnalyzeItem                            # doctest: +SKIP
    >>> with Analyzer() as analyzer:                                          # doctest: +SKIP
    ...     a, b = analyzer.analyze([AnalyzeItem("a", Path("a.jpg")), AnalyzeItem("b", Path("b.jpg"))])
    ...     analyzer.compare(a.faceprints[0], b.faceprints[0]).probability
"""

# The one place the version is written: pyproject.toml reads it from here (setuptools dynamic version), so
# no start-up pays for importlib.metadata.
__version__ = "0.1.0"

# After the names above: the engine's modules import them from here.
from faceprint.analyze import AnalyzeItem, AnalyzeOptions, Analyzer, ImageResult
from faceprint.errors import FaceprintError
from faceprint.io.image import ImageLimits, decode_image, load_image
from faceprint.pipeline import Pipeline, PipelineConfig, load_pipeline
from faceprint.types import Comparison, Detection, Face, Faceprint, FaceQuality

__all__ = [
    "AnalyzeItem",
    "AnalyzeOptions",
    "Analyzer",
    "Comparison",
    "Detection",
    "Face",
    "FaceQuality",
    "Faceprint",
    "FaceprintError",
    "ImageLimits",
    "ImageResult",
    "Pipeline",
    "PipelineConfig",
    "__version__",
    "decode_image",
    "load_image",
    "load_pipeline",
]
