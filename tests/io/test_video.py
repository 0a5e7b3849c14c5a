"""Reading videos with PyAV: info, exact frame indices, sampling, seeking, formats, rotation, VFR, bad inputs.

Every video is made here with PyAV's bundled encoders (libx264, mpeg4, libvpx-vp9); the shared Hamilton clip
checks a real file whose stream starts at 0.852 s.
"""

from __future__ import annotations

import gc
import itertools
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="PyAV is in the video extra")

from faceprint.errors import MissingFileError, UsageError  # noqa: E402
from faceprint.io.video import (  # noqa: E402
    EmptyVideoError,
    FrameSampling,
    NotAVideoError,
    NoVideoStreamError,
    TruncatedVideoError,
    VideoLimits,
    VideoTooLargeError,
    iter_video_frames,
    open_video,
)
from faceprint.video.synthetic import write_video  # noqa: E402

NTSC = Fraction(30000, 1001)


def numbered_frames(count: int, size_wh: tuple[int, int] = (64, 48)) -> list[np.ndarray]:
    """Frames whose mean brightness encodes their number (survives lossy coding), plus a marker corner."""
    width, height = size_wh
    frames = []
    for i in range(count):
        frame = np.full((height, width, 3), 20 + (i * 7) % 200, np.uint8)
        frame[:8, :8] = (255, 0, 0)  # top-left marker: shows where rotation moves it
        frames.append(frame)
    return frames


@pytest.mark.parametrize(
    ("suffix", "codec"),
    [(".mp4", "libx264"), (".mov", "libx264"), (".mkv", "mpeg4"), (".webm", "libvpx-vp9"), (".avi", "mpeg4")],
)
def test_formats_give_exact_indices_and_info(tmp_path: Path, suffix: str, codec: str) -> None:
    path = tmp_path / f"clip{suffix}"
    write_video(path, numbered_frames(30), fps=Fraction(25), codec=codec, bit_rate=4_000_000)
    with open_video(path) as video:
        info = video.info
        frames = list(video.frames())
    assert info.fps == Fraction(25)
    assert info.size_wh == (64, 48)
    assert info.total_frames == 30
    assert info.rotation_deg == 0
    assert info.duration_s == Fraction(30, 25)
    assert [f.index for f in frames] == list(range(30))
    assert frames[7].time_s == Fraction(7, 25)
    assert frames[3].image.shape == (48, 64, 3) and frames[3].image.dtype == np.uint8
    means = [float(f.image[10:, 10:].mean()) for f in frames]
    assert means == pytest.approx([20 + (i * 7) % 200 for i in range(30)], abs=4)
    assert video.closed


def test_ntsc_rate_is_an_exact_fraction(tmp_path: Path) -> None:
    path = tmp_path / "ntsc.mp4"
    write_video(path, numbered_frames(40), fps=NTSC)
    with open_video(path) as video:
        frames = list(video.frames(sampling=FrameSampling(sample_fps=Fraction(5))))
        assert video.info.fps == NTSC
    # floor(i * 5 / 29.97) changes at 0, 6, 12, 18, 24, 30, 36
    assert [f.index for f in frames] == [0, 6, 12, 18, 24, 30, 36]
    assert frames[1].time_s == Fraction(6 * 1001, 30000)


def test_every_n_frames_and_seek(tmp_path: Path) -> None:
    path = tmp_path / "seek.mp4"
    write_video(path, numbered_frames(60), fps=Fraction(25), options={"g": "10"})
    with open_video(path) as video:
        assert [f.index for f in video.frames(sampling=FrameSampling(every_n_frames=20))] == [0, 20, 40]
        video.seek(37)
        frames = list(video.frames())
    assert [f.index for f in frames] == list(range(37, 60))
    assert float(frames[0].image[10:, 10:].mean()) == pytest.approx(20 + (37 * 7) % 200, abs=4)


def test_sampling_options_are_validated() -> None:
    assert FrameSampling().sample_fps == Fraction(5)
    with pytest.raises(UsageError):
        FrameSampling(sample_fps=Fraction(5), every_n_frames=3)
    with pytest.raises(UsageError):
        FrameSampling(every_n_frames=0)
    with pytest.raises(UsageError):
        FrameSampling(sample_fps=Fraction(0))


@pytest.mark.parametrize(
    ("rotation", "marker_corner"), [(90, "bottom_left"), (-90, "top_right"), (180, "bottom_right")]
)
def test_rotation_metadata_gives_upright_frames(tmp_path: Path, rotation: int, marker_corner: str) -> None:
    path = tmp_path / "phone.mp4"
    write_video(path, numbered_frames(5, (64, 48)), fps=Fraction(30), rotation_deg=rotation)
    with open_video(path) as video:
        frame = next(video.frames())
        info = video.info
    assert info.rotation_deg == rotation % 360
    expected_wh = (48, 64) if rotation % 180 else (64, 48)
    assert info.size_wh == expected_wh
    assert (frame.image.shape[1], frame.image.shape[0]) == expected_wh
    h, w = frame.image.shape[:2]
    corners = {
        "top_left": frame.image[:4, :4],
        "top_right": frame.image[:4, w - 4 :],
        "bottom_left": frame.image[h - 4 :, :4],
        "bottom_right": frame.image[h - 4 :, w - 4 :],
    }
    red = {name: bool(c[..., 0].mean() > 150 and c[..., 1].mean() < 100) for name, c in corners.items()}
    assert red == {name: name == marker_corner for name in corners}


def test_stream_start_time_is_not_frame_zero(examples_dir: Path) -> None:
    with open_video(examples_dir / "short_hamilton_clip.mp4") as video:
        info = video.info
        first = next(video.frames())
    assert info.fps == Fraction(2997, 100)
    assert info.size_wh == (640, 360)
    assert info.total_frames == 275
    assert float(info.start_time_s) == pytest.approx(0.852, abs=1e-3)
    assert info.has_audio
    assert (first.index, first.time_s) == (0, Fraction(0))


def test_variable_frame_rate_keeps_indices_increasing(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mkv"
    times_ms = [0, 40, 80, 100, 120, 200, 400, 440, 441, 480]  # bursts, a gap, two frames 1 ms apart
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, ms in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(numbered_frames(i + 1)[i], format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with open_video(path) as video:
        indices = [f.index for f in video.frames()]
    assert len(indices) == len(times_ms)
    assert all(b > a for a, b in itertools.pairwise(indices))
    # On the 25 fps grid: 0 ms -> 0, 200 ms -> 5, 400 ms -> 10
    assert indices[0] == 0 and indices[5] == 5 and indices[6] == 10


def test_corrupt_frames_mid_stream_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.avi"
    rng = np.random.default_rng(1)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=25, options={"g": "5"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        written = 0
        for i, image in enumerate(numbered_frames(40)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                if 15 <= written <= 17:  # replace three packets by noise
                    noise = av.Packet(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
                    noise.pts, noise.dts, noise.time_base, noise.stream = (
                        packet.pts,
                        packet.dts,
                        packet.time_base,
                        stream,
                    )
                    packet = noise
                container.mux(packet)
                written += 1
        for packet in stream.encode(None):
            container.mux(packet)
    with open_video(path) as video:
        indices = [f.index for f in video.frames()]
        stats = video.stats
    assert stats.corrupt_frames == 3
    assert indices == [i for i in range(40) if not 15 <= i <= 17]  # the rest keep their true indices
    assert stats.missing_frames == 3
    assert not video.truncated


def test_reader_is_released_when_the_consumer_stops_early(tmp_path: Path) -> None:
    path = tmp_path / "early.mp4"
    write_video(path, numbered_frames(20), fps=Fraction(25))
    frames = iter_video_frames(path)
    assert next(frames).index == 0
    frame_code = frames.gi_frame
    assert frame_code is not None
    reader = frame_code.f_locals["reader"]
    frames.close()  # what `break` in a for loop and garbage collection do
    assert reader.closed
    with open_video(path) as video:
        for frame in video.frames():
            if frame.index == 3:
                break
    assert video.closed
    with pytest.raises(UsageError):
        next(video.frames())
    gc.collect()


# --- bad inputs ------------------------------------------------------------------------------------------


def test_not_a_video(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video at all\n" * 20)
    with pytest.raises(NotAVideoError) as err:
        open_video(text)
    assert err.value.code == "not_a_video"
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(NotAVideoError):
        open_video(empty)


def test_a_still_image_is_not_a_video(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.new("RGB", (32, 32), (10, 200, 10)).save(path)
    with pytest.raises(NotAVideoError, match="still image"):
        open_video(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        open_video(tmp_path / "nope.mp4")


def test_truncated_mp4(tmp_path: Path) -> None:
    path = tmp_path / "full.mp4"
    write_video(path, numbered_frames(30), fps=Fraction(25))
    cut = tmp_path / "cut.mp4"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # the moov index is at the end: gone
    with pytest.raises(TruncatedVideoError) as err:
        open_video(cut)
    assert err.value.code == "truncated_video"


def test_truncated_matroska_reads_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "full.mkv"
    write_video(path, numbered_frames(60, (128, 96)), fps=Fraction(25), codec="mpeg4")
    cut = tmp_path / "cut.mkv"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with open_video(cut) as video:
        indices = [f.index for f in video.frames()]
        assert 0 < len(indices) < 60
        assert indices == list(range(len(indices)))
        assert video.truncated


def test_audio_only(tmp_path: Path) -> None:
    path = tmp_path / "sound.m4a"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=44100)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(NoVideoStreamError) as err:
        open_video(path)
    assert err.value.code == "no_video_stream"
    assert err.value.details["streams"] == ["audio"]


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_zero_frames(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"zero{suffix}"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    with pytest.raises(EmptyVideoError) as err:
        open_video(path)
    assert err.value.code == "empty_video"


def test_resolution_over_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.mp4"
    write_video(path, numbered_frames(3, (256, 128)), fps=Fraction(25))
    with pytest.raises(VideoTooLargeError) as err:
        open_video(path, limits=VideoLimits(max_side_px=200))
    assert err.value.details["size_wh"] == [256, 128]
    with pytest.raises(VideoTooLargeError):
        open_video(path, limits=VideoLimits(max_pixels=256 * 127))
    with open_video(path, limits=VideoLimits(max_side_px=256)) as video:
        assert video.info.size_wh == (256, 128)


def test_frames_downsized_for_detection(tmp_path: Path) -> None:
    path = tmp_path / "big.mp4"
    write_video(path, numbered_frames(4, (320, 240)), fps=Fraction(25), rotation_deg=90)
    with open_video(path) as video:
        frames = list(video.frames(detect_max_side_px=160))
    assert frames[0].image.shape == (320, 240, 3)  # upright, full size
    assert frames[0].detect_image is not None and frames[0].detect_image.shape == (160, 120, 3)
    assert frames[0].detection_image is frames[0].detect_image
    assert float(frames[2].detect_image[20:, 20:].mean()) == pytest.approx(
        float(frames[2].image[40:, 40:].mean()), abs=3
    )
    with open_video(path) as video:
        same = next(video.frames(detect_max_side_px=400))
    assert same.detect_image is None and same.detection_image is same.image
