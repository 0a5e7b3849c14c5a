"""The bad-input corpus: every file is built here, each must give its code or a correct image."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceprint.errors import (
    DecodeError,
    ImageTooLargeError,
    ImageTooSmallError,
    MissingFileError,
    NotRegularFileError,
    UnsupportedFormatError,
)
from faceprint.io.image import ImageLimits, decode_image, load_image, read_image_file

PIXEL_TESTS = ImageLimits(min_side_px=1)
"""These tests check pixel conversions on a few pixels, below the size a face photo needs."""


def _encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _gradient(width: int = 64, height: int = 48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, axis=0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, axis=1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=2), "RGB")


def _png_header_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def test_rgb_jpeg() -> None:
    image = decode_image(_encode(_gradient(), "JPEG", quality=95))
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8 and image.flags.c_contiguous


@pytest.mark.parametrize(
    ("data", "error", "code"),
    [
        (b"", DecodeError, "decode_error"),
        (b"hello, I am text pretending to be a JPEG\n" * 10, DecodeError, "decode_error"),
        (_png_header_claiming(30000, 30000), ImageTooLargeError, "image_too_large"),
        (_encode(_gradient(), "GIF"), UnsupportedFormatError, "unsupported_format"),
        (_encode(_gradient(), "TIFF"), UnsupportedFormatError, "unsupported_format"),
    ],
    ids=["zero-bytes", "text-named-jpg", "png-claims-30000x30000", "gif", "tiff"],
)
def test_bad_inputs_give_their_code(data: bytes, error: type[Exception], code: str) -> None:
    with pytest.raises(error) as info:
        decode_image(data, name="x.jpg")
    assert getattr(info.value, "code") == code  # noqa: B009


def test_truncated_jpeg() -> None:
    data = _encode(_gradient(256, 256), "JPEG", quality=90)
    with pytest.raises(DecodeError) as info:
        decode_image(data[: len(data) // 2], name="cut.jpg")
    assert info.value.code == "decode_error" and "cut.jpg" in info.value.message


def test_byte_limit_checked_before_decoding() -> None:
    with pytest.raises(ImageTooLargeError):
        decode_image(_encode(_gradient(), "PNG"), limits=ImageLimits(max_bytes=100))


def test_pixel_limit() -> None:
    with pytest.raises(ImageTooLargeError):
        decode_image(_encode(_gradient(200, 200), "PNG"), limits=ImageLimits(max_pixels=10_000))


def test_cmyk_jpeg_becomes_rgb() -> None:
    rgb = _gradient()
    image = decode_image(_encode(rgb.convert("CMYK"), "JPEG", quality=95))
    assert image.shape == (48, 64, 3)
    assert np.abs(image.astype(int) - np.asarray(rgb, dtype=int)).mean() < 8


def test_16_bit_png_is_scaled_not_clipped() -> None:
    ramp = np.linspace(0, 65535, 64, dtype=np.uint16)[None, :].repeat(8, axis=0)
    image = decode_image(_encode(Image.fromarray(ramp), "PNG"), limits=PIXEL_TESTS)
    assert image.shape == (8, 64, 3)
    assert image[0, 0, 0] == 0 and image[0, -1, 0] == 255 and 100 < image[0, 32, 0] < 160


def test_16_bit_rgb_png() -> None:
    # Pillow writes 48-bit RGB PNGs only from raw data; build one by hand.
    width, height = 4, 2
    rows = b"".join(b"\x00" + struct.pack(">" + "H" * width * 3, *([65535, 0, 32768] * width)) for _ in range(height))

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    image = decode_image(data, limits=PIXEL_TESTS)
    assert image.shape == (2, 4, 3)
    assert tuple(image[0, 0]) == (255, 0, 128)


def test_grayscale_png() -> None:
    image = decode_image(_encode(_gradient().convert("L"), "PNG"))
    assert image.shape == (48, 64, 3) and np.array_equal(image[..., 0], image[..., 1])


def test_palette_png_with_alpha_is_composited_on_white() -> None:
    palette_image = Image.new("P", (10, 10), 0)
    palette_image.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    palette_image.paste(1, (5, 0, 10, 10))
    data = _encode(palette_image, "PNG", transparency=0)
    image = decode_image(data, limits=PIXEL_TESTS)
    assert tuple(image[0, 0]) == (255, 255, 255)  # transparent red -> white background
    assert tuple(image[0, 9]) == (0, 0, 255)


def test_rgba_png() -> None:
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 255))
    assert tuple(decode_image(_encode(rgba, "PNG"), limits=PIXEL_TESTS)[0, 0]) == (10, 20, 30)


@pytest.mark.parametrize("fmt", ["WEBP", "BMP"])
def test_webp_and_bmp(fmt: str) -> None:
    image = decode_image(_encode(_gradient(), fmt, **({"lossless": True} if fmt == "WEBP" else {})))
    assert image.shape == (48, 64, 3)
    assert np.abs(image.astype(int) - np.asarray(_gradient(), dtype=int)).max() <= 2


def test_exif_orientation_is_applied() -> None:
    wide = _gradient(64, 32)  # landscape pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image = decode_image(_encode(wide, "JPEG", exif=exif.tobytes(), quality=95))
    assert image.shape == (64, 32, 3)  # shown upright: portrait


def test_load_image_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(DecodeError):
        load_image(tmp_path)


# --- hostile-probe regressions (issue 15) ---------------------------------------------------------------------


@pytest.mark.parametrize("size_wh", [(1, 1), (1, 20_000), (20_000, 1), (15, 300), (300, 15)])
def test_degenerate_images_are_too_small_before_any_detector(size_wh: tuple[int, int]) -> None:
    # issue 15 #14: these reached ONNX Runtime and came back as a traceback or internal_error
    data = _encode(Image.new("RGB", size_wh, (90, 90, 90)), "PNG")
    with pytest.raises(ImageTooSmallError) as caught:
        decode_image(data, name="sliver.png")
    assert caught.value.code == "image_too_small"
    assert caught.value.details["size_wh"] == list(size_wh)
    assert "sliver.png" in caught.value.message


def test_the_smallest_allowed_image_decodes() -> None:
    assert decode_image(_encode(Image.new("RGB", (16, 16)), "PNG")).shape == (16, 16, 3)
    with pytest.raises(ValueError):
        ImageLimits(min_side_px=0)


def test_a_fifo_is_refused_without_being_opened(tmp_path: Path) -> None:
    # issue 15 #6: open() on a FIFO blocks until a writer comes, forever
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError) as caught:
        load_image(fifo)
    assert caught.value.code == "not_regular_file"
    with pytest.raises(NotRegularFileError):
        read_image_file(Path("/dev/zero"))
    with pytest.raises(DecodeError, match="directory"):
        load_image(tmp_path)
