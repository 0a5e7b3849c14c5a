"""Decode image bytes to RGB uint8, safely.

Formats: JPEG, PNG (8/16-bit, grayscale, palette, alpha), WebP, BMP. The EXIF orientation is applied so
boxes refer to the upright picture a person sees. Limits are checked *before* pixels are decoded (from the
header), so a 30000x30000 PNG of a few KB is refused without allocating 2.7 GB.

Example:
    >>> import io, numpy as np
    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.new("L", (4, 3), 128).save(buf, "PNG")
    >>> decode_image(buf.getvalue()).shape
    (3, 4, 3)
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceprint.errors import DecodeError, ImageTooLargeError, MissingFileError, UnsupportedFormatError
from faceprint.types import RGBImage

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "MPO"})
# MPO is how Pillow names multi-picture JPEGs from phones; the first frame is an ordinary JPEG.


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """Guards against decompression bombs and runaway inputs."""

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_side_px: int = 20_000

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_pixels <= 0 or self.max_side_px <= 0:
            raise ValueError("image limits must be positive")


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit and 32-bit grayscale: Pillow's convert("L") clips instead of scaling, so scale ourselves.
        array = np.asarray(image, dtype=np.float64)
        maximum = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        gray = np.clip(array / maximum * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        # Composite on white: transparent areas of a cut-out portrait are background, not black hair.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    # L, P, CMYK, YCbCr, 1, RGBX …: Pillow's conversions are correct for these.
    return image.convert("RGB")


def decode_image(data: bytes, *, limits: ImageLimits | None = None, name: str = "<bytes>") -> RGBImage:
    """Decode image bytes to a C-contiguous ``(h, w, 3)`` uint8 RGB array, EXIF orientation applied.

    Raises:
        ImageTooLargeError: the bytes, the pixel count or a side exceed ``limits``.
        UnsupportedFormatError: a real image in a format faceprint does not accept (e.g. GIF, TIFF).
        DecodeError: anything else that is not a readable image (empty, truncated, text, corrupt).
    """
    limits = limits if limits is not None else ImageLimits()
    if len(data) == 0:
        raise DecodeError(f"{name}: empty file (0 bytes)", details={"name": name})
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(
            f"{name}: {len(data)} bytes exceeds the limit of {limits.max_bytes}",
            details={"name": name, "bytes": len(data), "max_bytes": limits.max_bytes},
        )
    try:
        with warnings.catch_warnings():
            # Pillow warns (then errors) on huge images by its own global limit; ours is checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image_format = image.format or "unknown"
            width, height = image.size
            if width > limits.max_side_px or height > limits.max_side_px or width * height > limits.max_pixels:
                raise ImageTooLargeError(
                    f"{name}: {width}x{height} pixels exceeds the limit "
                    f"({limits.max_pixels} pixels, {limits.max_side_px} px a side)",
                    details={"name": name, "size_wh": [width, height], "max_pixels": limits.max_pixels},
                )
            if image_format not in SUPPORTED_FORMATS:
                raise UnsupportedFormatError(
                    f"{name}: {image_format} images are not supported (JPEG, PNG, WebP, BMP are)",
                    details={"name": name, "format": image_format},
                )
            image.load()
            upright: Image.Image = ImageOps.exif_transpose(image) or image
            rgb = _to_rgb(upright)
            array = np.asarray(rgb, dtype=np.uint8)
    except (ImageTooLargeError, UnsupportedFormatError):
        raise
    except Image.DecompressionBombError as err:
        raise ImageTooLargeError(f"{name}: {err}", details={"name": name}) from err
    except UnidentifiedImageError as err:
        raise DecodeError(f"{name}: not a recognisable image file", details={"name": name}) from err
    except (OSError, SyntaxError, ValueError) as err:
        # Pillow reports truncation and corrupt streams as OSError ("image file is truncated", …).
        raise DecodeError(f"{name}: cannot decode image: {err}", details={"name": name}) from err
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise DecodeError(f"{name}: decoded to an unusable shape {array.shape}", details={"name": name})
    return np.ascontiguousarray(array)


def load_image(path: str | Path, *, limits: ImageLimits | None = None) -> RGBImage:
    """Read and decode an image file (see :func:`decode_image`)."""
    file_path = Path(path)
    limits = limits if limits is not None else ImageLimits()
    try:
        size = file_path.stat().st_size
        if size > limits.max_bytes:
            raise ImageTooLargeError(
                f"{file_path}: {size} bytes exceeds the limit of {limits.max_bytes}",
                details={"name": str(file_path), "bytes": size, "max_bytes": limits.max_bytes},
            )
        data = file_path.read_bytes()
    except FileNotFoundError as err:
        raise MissingFileError(f"{file_path}: no such file", details={"name": str(file_path)}) from err
    except IsADirectoryError as err:
        raise DecodeError(f"{file_path}: is a directory, not an image", details={"name": str(file_path)}) from err
    return decode_image(data, limits=limits, name=str(file_path))
