"""faceprint: face detection, alignment, faceprints and calibrated comparison."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("faceprint")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
