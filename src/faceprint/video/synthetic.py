"""Synthetic videos with known content, for tests, benchmarks and demos (PyAV's bundled encoders).

A :class:`SceneFace` is a picture pasted into frames ``start_frame``-``end_frame`` (inclusive), moving in a
straight line; :func:`render_scene` draws the frames and :func:`write_video` encodes them (libx264, mpeg4,
libvpx-vp9, mjpeg …) into MP4, MOV, MKV, WebM or AVI, optionally with rotation metadata, so the truth of
every frame is known exactly.

Example:
    >>> face = SceneFace(photo, start_frame=10, end_frame=60,  # doctest: +SKIP
    ...                  start_xy=(20, 40), end_xy=(200, 40), height_px=120)
    >>> write_video("clip.mp4", render_scene((640, 360), 100, [face]), fps=Fraction(25))  # doctest: +SKIP
    100
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from faceprint.errors import UsageError
from faceprint.types import RGBImage


@dataclass(frozen=True, slots=True, eq=False)
class SceneFace:
    """A picture shown in frames ``start_frame``..``end_frame`` (inclusive), its top-left corner moving
    linearly from ``start_xy`` to ``end_xy``, scaled to ``height_px`` tall."""

    image: RGBImage
    start_frame: int
    end_frame: int
    start_xy: tuple[int, int]
    end_xy: tuple[int, int]
    height_px: int

    def __post_init__(self) -> None:
        if self.end_frame < self.start_frame or self.start_frame < 0 or self.height_px < 1:
            raise UsageError("a scene face needs 0 <= start_frame <= end_frame and a positive height")

    def scaled(self) -> RGBImage:
        height, width = self.image.shape[:2]
        new_w = max(1, round(width * self.height_px / height))
        return np.asarray(Image.fromarray(self.image).resize((new_w, self.height_px), Image.Resampling.LANCZOS))

    def position(self, frame_index: int) -> tuple[int, int]:
        """Top-left corner at ``frame_index``."""
        span = self.end_frame - self.start_frame
        t = 0.0 if span == 0 else (frame_index - self.start_frame) / span
        return (
            round(self.start_xy[0] + t * (self.end_xy[0] - self.start_xy[0])),
            round(self.start_xy[1] + t * (self.end_xy[1] - self.start_xy[1])),
        )

    def visible(self, frame_index: int) -> bool:
        return self.start_frame <= frame_index <= self.end_frame


def render_scene(
    size_wh: tuple[int, int], total_frames: int, faces: Sequence[SceneFace], *, background: int = 90
) -> Iterator[RGBImage]:
    """Frames of a grey background (a faint gradient) with the faces pasted where they are visible."""
    width, height = size_wh
    ramp = np.linspace(background - 20, background + 20, width, dtype=np.float32)
    base = np.repeat(np.repeat(ramp[None, :, None], height, axis=0), 3, axis=2).clip(0, 255).astype(np.uint8)
    scaled = [face.scaled() for face in faces]
    for index in range(total_frames):
        frame = base.copy()
        for face, picture in zip(faces, scaled, strict=True):
            if not face.visible(index):
                continue
            x, y = face.position(index)
            ph, pw = picture.shape[:2]
            left, top = max(x, 0), max(y, 0)
            right, bottom = min(x + pw, width), min(y + ph, height)
            if right > left and bottom > top:
                frame[top:bottom, left:right] = picture[top - y : bottom - y, left - x : right - x]
        yield frame


def write_video(
    path: str | Path,
    frames: Iterable[RGBImage],
    *,
    fps: Fraction,
    codec: str = "libx264",
    rotation_deg: int = 0,
    pix_fmt: str = "yuv420p",
    options: Mapping[str, str] | None = None,
    bit_rate: int | None = None,
) -> int:
    """Encode RGB frames (all one size, even sides for yuv420p) into ``path``; returns the frame count.

    The container comes from the suffix (``.mp4``, ``.mov``, ``.mkv``, ``.webm``, ``.avi``).
    ``rotation_deg`` writes display-matrix rotation metadata (counter-clockwise, as phones do).
    """
    import av

    count = 0
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps, options=dict(options or {}))
        if not isinstance(stream, av.VideoStream):
            raise UsageError(f"{codec} is not a video encoder")
        stream.pix_fmt = pix_fmt
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        started = False
        for image in frames:
            if not started:
                stream.height, stream.width = int(image.shape[0]), int(image.shape[1])
                if rotation_deg:
                    stream.set_display_rotation(rotation_deg)
                started = True
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = count
            for packet in stream.encode(frame):
                container.mux(packet)
            count += 1
        if started:
            for packet in stream.encode(None):
                container.mux(packet)
    return count
