"""Read video files as a stream of upright RGB frames with exact frame indices and times (PyAV).

PyAV bundles FFmpeg, so MP4, MOV, MKV, WebM and AVI (H.264, HEVC, VP8/9, AV1, MPEG-4, MJPEG …) decode
without a system ffmpeg. Install it with the ``video`` extra.

Frame indices come from presentation timestamps, not from counting: ``index = round((pts - start) *
time_base * fps)`` with ``start`` the stream's start time. The first frame of a clip whose stream starts at
0.852 s is frame 0, and a clip with a dropped or corrupt frame keeps the indices of the frames after it.
With a variable frame rate the index is the position on the grid of the nominal (average) rate, so
``time = index / fps`` stays exact and indices stay strictly increasing.

Frames are decoded one at a time and only sampled ones are converted to RGB, so an hour of video costs
O(1) memory. Rotation metadata (phones) is applied: frames come out the way a player shows them.

Example:
    >>> with open_video("clip.mp4") as video:  # doctest: +SKIP
    ...     print(video.info.fps, video.info.size_wh)
    ...     for frame in video.frames(sampling=FrameSampling(sample_fps=Fraction(5))):
    ...         detect(frame.image)
    2997/100 (640, 360)
"""

from __future__ import annotations

import math
import os
import types
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from faceprint.errors import BackendUnavailableError, DecodeError, InputError, MissingFileError, UsageError
from faceprint.types import RGBImage

if TYPE_CHECKING:
    import av.container
    import av.video.frame
    import av.video.stream

# --- errors -------------------------------------------------------------------------------------------


class NotAVideoError(DecodeError):
    """The file is not a video container FFmpeg can read (text, an image, random bytes)."""

    code = "not_a_video"
    http_status = 415


class TruncatedVideoError(DecodeError):
    """The file starts like a video container but its index (e.g. MP4's ``moov``) is missing or cut off."""

    code = "truncated_video"


class NoVideoStreamError(InputError):
    """A media file without a video stream (audio only)."""

    code = "no_video_stream"


class EmptyVideoError(InputError):
    """A video stream from which not a single frame decodes."""

    code = "empty_video"


class VideoTooLargeError(InputError):
    """The frame size exceeds :class:`VideoLimits`."""

    code = "video_too_large"
    http_status = 413


# Container formats FFmpeg opens that hold a still image, not a video.
_IMAGE_FORMATS = frozenset({"image2", "gif", "apng", "webp_pipe", "tiff_pipe", "bmp_pipe", "ico", "svg_pipe"})


@dataclass(frozen=True, slots=True)
class VideoLimits:
    """Guards against runaway inputs: the decoded frame size is checked before any frame is decoded."""

    max_side_px: int = 8192
    max_pixels: int = 40_000_000
    """A little more than 8K UHD (7680x4320 = 33.2 M)."""

    def __post_init__(self) -> None:
        if self.max_side_px <= 0 or self.max_pixels <= 0:
            raise UsageError("video limits must be positive")


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What a video is, read from its headers (and its first frame, for the rotation)."""

    path: str
    container: str
    """FFmpeg's format name, e.g. ``mov,mp4,m4a,3gp,3g2,mj2``, ``matroska,webm``, ``avi``."""
    codec: str
    fps: Fraction
    """The nominal (average) frame rate, exact: ``2997/100``, ``30000/1001``, ``25``."""
    size_wh: tuple[int, int]
    """Upright frame size (after rotation), pixels."""
    total_frames: int
    """Frames the headers announce; estimated from the duration when they do not say."""
    total_frames_estimated: bool
    duration_s: Fraction
    """Duration of the video stream, seconds (from the headers)."""
    rotation_deg: int
    """Counter-clockwise rotation applied to every decoded frame to show it upright: 0, 90, 180 or 270."""
    start_time_s: Fraction
    """The presentation time of the stream's start; frame 0 is shown then."""
    has_audio: bool

    def frame_time_s(self, frame_index: int) -> Fraction:
        """``frame_index / fps``, exact (0 for the first frame).

        Example:
            >>> info = VideoInfo("v.mp4", "mp4", "h264", Fraction(25), (64, 48), 10, False, Fraction(2, 5), 0,
            ...                  Fraction(0), False)
            >>> info.frame_time_s(1036 // 2)
            Fraction(518, 25)
        """
        return Fraction(frame_index) / self.fps

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "container": self.container,
            "codec": self.codec,
            "fps": float(self.fps),
            "fps_exact": f"{self.fps.numerator}/{self.fps.denominator}",
            "size_wh": list(self.size_wh),
            "total_frames": self.total_frames,
            "total_frames_estimated": self.total_frames_estimated,
            "duration_s": float(self.duration_s),
            "rotation_deg": self.rotation_deg,
            "start_time_s": float(self.start_time_s),
            "has_audio": self.has_audio,
        }


@dataclass(frozen=True, slots=True, eq=False)
class VideoFrame:
    """One decoded, upright frame."""

    index: int
    """Frame index from the presentation timestamp (see the module doc)."""
    time_s: Fraction
    """``index / fps``: seconds since the stream's start time, exact."""
    image: RGBImage
    detect_image: RGBImage | None = None
    """The frame downsized (by FFmpeg, area-averaged) to the ``detect_max_side_px`` asked of
    :meth:`VideoReader.frames`, or None when the frame is not larger than that."""

    @property
    def detection_image(self) -> RGBImage:
        """What to detect faces on: the downsized frame when there is one, else the frame."""
        return self.image if self.detect_image is None else self.detect_image


DEFAULT_SAMPLE_FPS = Fraction(5)


@dataclass(frozen=True, slots=True)
class FrameSampling:
    """Which frames to keep: at most ``sample_fps`` per second, or every ``every_n_frames``-th frame.

    A frame is kept when it is the first of a new sampling bucket, ``floor(index * sample_fps / fps)``
    (or ``index // every_n_frames``): decisions depend on frame indices only, so they are exact and
    reproducible, and a missing frame moves the sample to the next frame of its bucket.

    Example:
        >>> s = FrameSampling(sample_fps=Fraction(5))
        >>> [i for i in range(12) if s.bucket(i, Fraction(25)) != s.bucket(i - 1, Fraction(25))]
        [0, 5, 10]
    """

    sample_fps: Fraction | None = None
    """Default 5 when ``every_n_frames`` is not given either."""
    every_n_frames: int | None = None

    def __post_init__(self) -> None:
        if self.sample_fps is not None and self.every_n_frames is not None:
            raise UsageError("give sample_fps or every_n_frames, not both")
        if self.sample_fps is None and self.every_n_frames is None:
            object.__setattr__(self, "sample_fps", DEFAULT_SAMPLE_FPS)
        elif self.sample_fps is not None:
            object.__setattr__(self, "sample_fps", Fraction(self.sample_fps))
        if self.sample_fps is not None and self.sample_fps <= 0:
            raise UsageError(f"sample_fps must be positive, got {self.sample_fps}")
        if self.every_n_frames is not None and self.every_n_frames < 1:
            raise UsageError(f"every_n_frames must be at least 1, got {self.every_n_frames}")

    def bucket(self, frame_index: int, fps: Fraction) -> int:
        if self.every_n_frames is not None:
            return frame_index // self.every_n_frames
        if self.sample_fps is None:  # excluded by __post_init__
            raise UsageError("no sampling rate")
        if self.sample_fps >= fps:
            return frame_index
        return math.floor(frame_index * self.sample_fps / fps)


@dataclass(slots=True)
class VideoReadStats:
    """What happened while decoding (counts grow while frames are read)."""

    decoded_frames: int = 0
    corrupt_frames: int = 0
    """Frames (or packets) that failed to decode or came out flagged corrupt: skipped, the rest goes on."""
    missing_frames: int = 0
    """Frame indices skipped between two decoded frames (a decoder that dropped broken frames silently)."""
    yielded_frames: int = 0
    last_frame_index: int = -1
    ended: bool = False
    """The stream was read to its end."""

    def to_dict(self) -> dict[str, int]:
        return {
            "decoded_frames": self.decoded_frames,
            "corrupt_frames": self.corrupt_frames,
            "missing_frames": self.missing_frames,
            "yielded_frames": self.yielded_frames,
            "last_frame_index": self.last_frame_index,
        }


def _import_av() -> types.ModuleType:
    try:
        import av
    except ImportError as err:  # pragma: no cover - av is in the video and dev extras
        raise BackendUnavailableError(
            "video needs PyAV: pip install 'faceprint[video]'", details={"extra": "video"}
        ) from err
    return av


def _looks_like_video_container(path: Path) -> bool:
    """Whether the first bytes name a video container (MP4/MOV, Matroska/WebM, AVI)."""
    with path.open("rb") as handle:
        return _looks_like_video_head(handle.read(12))


def _looks_like_video_head(head: bytes) -> bool:
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return True
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return True
    return head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX")


def _normalise_rotation(degrees: float) -> int:
    return (round(degrees / 90.0) % 4) * 90


class VideoReader:
    """An open video: :attr:`info`, :meth:`frames` and :meth:`seek`. Use :func:`open_video` in a ``with``.

    Not thread-safe (one decoder). :meth:`close` is idempotent; leaving the ``with`` block, or a consumer
    dropping a :meth:`frames` iterator early, releases FFmpeg's file handle.
    """

    def __init__(self, path: str | Path | BinaryIO, *, limits: VideoLimits | None = None, name: str = "video") -> None:
        # A file object (a job's upload, decrypted as it is read) is demuxed in place: no copy in clear.
        self._file: BinaryIO | None = None if isinstance(path, str | Path) else path
        self._path = Path(path) if isinstance(path, str | Path) else Path(name)
        self._limits = limits if limits is not None else VideoLimits()
        self._container: av.container.InputContainer | None = None
        self.stats = VideoReadStats()
        self._av = _import_av()
        self._open()

    # --- opening ---------------------------------------------------------------------------------------

    def _open(self) -> None:
        if self._file is not None:
            self._open_file(self._file)
            return
        av = self._av
        name = str(self._path)
        if not self._path.exists():
            raise MissingFileError(f"{name}: no such file", details={"name": name})
        if self._path.is_dir():
            raise NotAVideoError(f"{name}: is a directory, not a video", details={"name": name})
        if self._path.stat().st_size == 0:
            raise NotAVideoError(f"{name}: empty file (0 bytes)", details={"name": name})
        try:
            container = av.open(name, mode="r")
        except av.FFmpegError as err:
            if _looks_like_video_container(self._path):
                raise TruncatedVideoError(
                    f"{name}: a video container whose index is missing or cut off (truncated file?): {err}",
                    details={"name": name},
                ) from err
            raise NotAVideoError(f"{name}: not a video FFmpeg can read: {err}", details={"name": name}) from err
        self._container = container
        try:
            self._probe(container)
        except BaseException:
            self.close()
            raise

    def _open_file(self, handle: BinaryIO) -> None:
        av = self._av
        name = str(self._path)
        size = handle.seek(0, os.SEEK_END)
        handle.seek(0)
        if size == 0:
            raise NotAVideoError(f"{name}: empty file (0 bytes)", details={"name": name})
        head = handle.read(12)
        handle.seek(0)
        try:
            container = av.open(handle, mode="r")
        except av.FFmpegError as err:
            if _looks_like_video_head(head):
                raise TruncatedVideoError(
                    f"{name}: a video container whose index is missing or cut off (truncated file?): {err}",
                    details={"name": name},
                ) from err
            raise NotAVideoError(f"{name}: not a video FFmpeg can read: {err}", details={"name": name}) from err
        self._container = container
        try:
            self._probe(container)
        except BaseException:
            self.close()
            raise

    def _probe(self, container: av.container.InputContainer) -> None:
        name = str(self._path)
        format_name = str(container.format.name)
        if format_name in _IMAGE_FORMATS or format_name.endswith("_pipe"):
            raise NotAVideoError(f"{name}: a still image ({format_name}), not a video", details={"name": name})
        if not list(container.streams):
            raise EmptyVideoError(f"{name}: the container holds no stream at all", details={"name": name})
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            raise NoVideoStreamError(
                f"{name}: no video stream (streams: {', '.join(kinds) or 'none'})",
                details={"name": name, "streams": kinds},
            )
        stream = container.streams.video[0]
        self._stream = stream
        context = stream.codec_context
        width, height = int(context.width), int(context.height)
        limits = self._limits
        if max(width, height) > limits.max_side_px or width * height > limits.max_pixels:
            raise VideoTooLargeError(
                f"{name}: {width}x{height} frames exceed the limit "
                f"({limits.max_pixels} pixels, {limits.max_side_px} px a side)",
                details={"name": name, "size_wh": [width, height], "max_pixels": limits.max_pixels},
            )
        # Frame threads decode ahead in FFmpeg's own threads; the GIL is released meanwhile.
        context.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if rate is None or rate <= 0:
            raise DecodeError(f"{name}: the video stream has no frame rate", details={"name": name})
        self._fps = Fraction(rate.numerator, rate.denominator)
        time_base = stream.time_base
        if time_base is None:
            raise DecodeError(f"{name}: the video stream has no time base", details={"name": name})
        self._time_base = Fraction(time_base.numerator, time_base.denominator)
        self._start_pts: int | None = None if stream.start_time is None else int(stream.start_time)
        self._pending: Iterator[av.video.frame.VideoFrame] = self._decode()
        first = next(self._pending, None)
        if first is None:
            raise EmptyVideoError(f"{name}: no frame of the video stream decodes", details={"name": name})
        if self._start_pts is None:
            self._start_pts = 0 if first.pts is None else int(first.pts)
        self._first: av.video.frame.VideoFrame | None = first
        rotation = _normalise_rotation(float(first.rotation or 0))
        upright_wh = (height, width) if rotation in (90, 270) else (width, height)

        duration_s: Fraction | None = None
        if stream.duration is not None and stream.duration > 0:
            duration_s = stream.duration * self._time_base
        elif container.duration is not None and container.duration > 0:
            duration_s = Fraction(int(container.duration), 1_000_000)
        announced = int(stream.frames or 0)
        if announced > 0:
            total, estimated = announced, False
        elif duration_s is not None:
            total, estimated = max(1, round(duration_s * self._fps)), True
        else:
            total, estimated = 0, True
        if duration_s is None:
            duration_s = Fraction(total) / self._fps
        self.info = VideoInfo(
            path=name,
            container=format_name,
            codec=str(context.name),
            fps=self._fps,
            size_wh=upright_wh,
            total_frames=total,
            total_frames_estimated=estimated,
            duration_s=duration_s,
            rotation_deg=rotation,
            start_time_s=Fraction(self._start_pts) * self._time_base,
            has_audio=bool(container.streams.audio),
        )

    # --- decoding --------------------------------------------------------------------------------------

    def _decode(self) -> Iterator[av.video.frame.VideoFrame]:
        """Decoded frames in presentation order; undecodable packets and corrupt frames skipped and counted."""
        av = self._av
        container = self._container
        if container is None:
            return
        for packet in container.demux(self._stream):
            try:
                frames = packet.decode()
            except av.FFmpegError:
                self.stats.corrupt_frames += 1
                continue
            for frame in frames:
                if frame.is_corrupt:
                    self.stats.corrupt_frames += 1
                    continue
                self.stats.decoded_frames += 1
                yield frame

    def _index_of(self, frame: av.video.frame.VideoFrame, previous: int) -> int:
        if frame.pts is None or self._start_pts is None:
            return previous + 1
        index = round((int(frame.pts) - self._start_pts) * self._time_base * self._fps)
        # VFR bursts (two frames on one grid slot) and odd timestamps must not break strict order.
        return max(index, previous + 1)

    def _upright(self, frame: av.video.frame.VideoFrame, *, max_side_px: int | None = None) -> RGBImage:
        if max_side_px is None:
            image = frame.to_ndarray(format="rgb24")
        else:
            scale = max_side_px / max(frame.width, frame.height)
            small_w, small_h = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
            # swscale's area filter straight from YUV: about 3x faster than resizing the RGB frame in Pillow.
            image = frame.reformat(width=small_w, height=small_h, format="rgb24", interpolation="AREA").to_ndarray()
        turns = self.info.rotation_deg // 90
        if turns:
            image = np.rot90(image, k=turns)
        return np.ascontiguousarray(image, dtype=np.uint8)

    def frames(
        self, *, sampling: FrameSampling | None = None, detect_max_side_px: int | None = None
    ) -> Iterator[VideoFrame]:
        """Upright frames from the current position (the start, or where :meth:`seek` put it).

        Only the frames ``sampling`` keeps are converted to RGB (every frame without it). Frames that do not
        decode are skipped and counted in :attr:`stats`. With ``detect_max_side_px``, frames larger than
        that also come downsized to it (:attr:`VideoFrame.detect_image`).

        Example:
            >>> with open_video("clip.mp4") as video:  # doctest: +SKIP
            ...     [f.index for f in video.frames(sampling=FrameSampling(every_n_frames=10))][:3]
            [0, 10, 20]
        """
        if self._container is None:
            raise UsageError(f"{self._path}: the video is closed")
        previous = self.stats.last_frame_index
        last_bucket: int | None = None
        while True:
            if self._first is not None:
                frame, self._first = self._first, None
            else:
                next_frame = next(self._pending, None)
                if next_frame is None:
                    self.stats.ended = True
                    return
                frame = next_frame
            index = self._index_of(frame, previous)
            self.stats.missing_frames += max(0, index - previous - 1)
            previous = index
            self.stats.last_frame_index = index
            if sampling is not None:
                bucket = sampling.bucket(index, self._fps)
                if bucket == last_bucket:
                    continue
                last_bucket = bucket
            self.stats.yielded_frames += 1
            small = None
            if detect_max_side_px is not None and max(frame.width, frame.height) > detect_max_side_px:
                small = self._upright(frame, max_side_px=detect_max_side_px)
            yield VideoFrame(
                index=index, time_s=Fraction(index) / self._fps, image=self._upright(frame), detect_image=small
            )

    @property
    def truncated(self) -> bool:
        """Read to its end, the stream held clearly fewer frames than its headers announce (a cut-off file)."""
        if not self.stats.ended or self.info.total_frames == 0:
            return False
        seen = self.stats.last_frame_index + 1
        slack = max(2, self.info.total_frames // 50) if self.info.total_frames_estimated else 1
        return seen + slack <= self.info.total_frames

    def seek(self, frame_index: int) -> None:
        """Move so that the next frame :meth:`frames` yields is the first at or after ``frame_index``.

        FFmpeg seeks to the key frame before the target; the frames between are decoded and dropped.
        """
        if frame_index < 0:
            raise UsageError(f"frame_index must be non-negative, got {frame_index}")
        container = self._container
        if container is None or self._start_pts is None:
            raise UsageError(f"{self._path}: the video is closed")
        target_pts = self._start_pts + math.floor(Fraction(frame_index) / self._fps / self._time_base)
        container.seek(target_pts, stream=self._stream, backward=True, any_frame=False)
        self._pending = self._decode()
        self._first = None
        self.stats.last_frame_index = -1
        previous = -1
        for frame in self._pending:
            index = self._index_of(frame, previous)
            previous = index
            if index >= frame_index:
                self._first = frame
                # The next frames() call computes this frame's index again from ``index - 1``.
                self.stats.last_frame_index = index - 1
                return

    # --- lifetime --------------------------------------------------------------------------------------

    def close(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            self._first = None
            container.close()

    @property
    def closed(self) -> bool:
        return self._container is None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_video(path: str | Path | BinaryIO, *, limits: VideoLimits | None = None, name: str = "video") -> VideoReader:
    """Open a video for reading; use it as a context manager so FFmpeg's handles are released.

    ``path`` may be a seekable binary file (read in place; ``name`` then names it in messages).

    Raises:
        MissingFileError: no such file.
        NotAVideoError: not a video container (text, an image, random bytes, an empty file).
        TruncatedVideoError: a video container cut off before its index.
        NoVideoStreamError: audio only.
        EmptyVideoError: no frame decodes.
        VideoTooLargeError: frames larger than ``limits``.
        BackendUnavailableError: PyAV is not installed.

    Example:
        >>> with open_video("clip.mp4") as video:  # doctest: +SKIP
        ...     video.info.total_frames
        275
    """
    return VideoReader(path, limits=limits, name=name)


def iter_video_frames(
    path: str | Path, *, sampling: FrameSampling | None = None, limits: VideoLimits | None = None
) -> Iterator[VideoFrame]:
    """Frames of one video as a generator that owns the file: closed in ``finally`` when it ends, fails, or
    its consumer stops early (``break``, an exception, garbage collection).

    Example:
        >>> first = next(iter_video_frames("clip.mp4"))  # doctest: +SKIP
        >>> first.index, first.time_s  # doctest: +SKIP
        (0, Fraction(0, 1))
    """
    reader = open_video(path, limits=limits)
    try:
        yield from reader.frames(sampling=sampling)
    finally:
        reader.close()
