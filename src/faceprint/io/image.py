"""Decode image bytes to RGB uint8, safely.

Formats: JPEG, PNG (8/16-bit, grayscale, palette, alpha), WebP, BMP. The EXIF orientation is applied so
boxes refer to the upright picture a person sees. Limits are checked *before* pixels are decoded (from the
header), so a 30000x30000 PNG of a few KB is refused without allocating 2.7 GB.

Example:
    >>> import io, numpy as np
    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.new("L", (40, 30), 128).save(buf, "PNG")
    >>> decode_image(buf.getvalue()).shape
    (30, 40, 3)
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceprint.errors import (
    DecodeError,
    ImageTooLargeError,
    ImageTooSmallError,
    InvalidArgumentError,
    MissingFileError,
    NotRegularFileError,
    UnsupportedFormatError,
)
from faceprint.types import RGBImage

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "MPO"})
# MPO is how Pillow names multi-picture JPEGs from phones; the first frame is an ordinary JPEG.


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """Guards against decompression bombs and runaway inputs."""

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_side_px: int = 20_000
    min_side_px: int = 16
    """Smallest side accepted. No detector finds a face in fewer pixels (HOG's window is 80 px, found down to
    ~40 px with upsampling; the CNN's is 40 px), and degenerate shapes (1x1, 1x20000) break the CNN fallback's
    convolutions and resizing. 16 keeps every real thumbnail that could hold a face (a 16 px image upsampled
    to 32+ px still runs through every stage) and refuses only slivers, before any detector sees them."""

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_pixels <= 0 or self.max_side_px <= 0 or self.min_side_px <= 0:
            raise InvalidArgumentError("image limits must be positive")
        if self.min_side_px > self.max_side_px:
            raise InvalidArgumentError("min_side_px must not exceed max_side_px")


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
        ImageTooSmallError: a side is below ``limits.min_side_px`` (checked from the header too).
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
            if width < limits.min_side_px or height < limits.min_side_px:
                raise ImageTooSmallError(
                    f"{name}: {width}x{height} pixels is too small for a face "
                    f"(at least {limits.min_side_px} px a side)",
                    details={"name": name, "size_wh": [width, height], "min_side_px": limits.min_side_px},
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
    except (ImageTooLargeError, ImageTooSmallError, UnsupportedFormatError):
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


def read_image_file(path: str | Path, *, limits: ImageLimits | None = None) -> bytes:
    """The bytes of an image file, after checking with ``stat`` that it is a regular file of allowed size.

    A FIFO, device or socket is refused without being opened (opening a FIFO blocks until a writer comes);
    a file swapped for one between the check and the open is caught too (non-blocking open, then ``fstat``).

    Raises:
        MissingFileError: no such file.
        NotRegularFileError: a FIFO, device or socket.
        DecodeError: a folder, or unreadable (permissions, I/O error).
        ImageTooLargeError: more bytes than ``limits.max_bytes``.

    Example:
        >>> import os, tempfile, pathlib
        >>> fifo = pathlib.Path(tempfile.mkdtemp()) / "pipe.jpg"; os.mkfifo(fifo)
        >>> try:
        ...     read_image_file(fifo)
        ... except NotRegularFileError as err:
        ...     err.code
        'not_regular_file'
    """
    file_path = Path(path)
    limits = limits if limits is not None else ImageLimits()
    details = {"name": str(file_path)}
    try:
        mode = file_path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise DecodeError(f"{file_path}: is a directory, not an image", details=details)
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(f"{file_path}: a FIFO, device or socket, not an image file", details=details)
        fd = os.open(file_path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise NotRegularFileError(f"{file_path}: no longer a regular file", details=details)
            if info.st_size > limits.max_bytes:
                raise ImageTooLargeError(
                    f"{file_path}: {info.st_size} bytes exceeds the limit of {limits.max_bytes}",
                    details={**details, "bytes": info.st_size, "max_bytes": limits.max_bytes},
                )
            data = handle.read(limits.max_bytes + 1)
    except (FileNotFoundError, NotADirectoryError) as err:
        raise MissingFileError(f"{file_path}: no such file", details=details) from err
    except IsADirectoryError as err:
        raise DecodeError(f"{file_path}: is a directory, not an image", details=details) from err
    except OSError as err:
        raise DecodeError(f"{file_path}: cannot read: {err.strerror}", details=details) from err
    return data


def load_image(path: str | Path, *, limits: ImageLimits | None = None) -> RGBImage:
    """Read and decode an image file (see :func:`read_image_file` and :func:`decode_image`)."""
    limits = limits if limits is not None else ImageLimits()
    return decode_image(read_image_file(path, limits=limits), limits=limits, name=str(path))
