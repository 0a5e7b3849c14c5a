"""The video run end to end on synthetic videos of colour "faces" (the weight-free engine of conftest.py).

Known truth: each square is pasted in a known frame range, so segments, times, timecodes and boxes are
asserted exactly. The real models run in test_real_video.py.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("av", reason="PyAV is in the video extra")

from PIL import Image

from faceprint.errors import UsageError
from faceprint.execute.base import CancelledError
from faceprint.gallery.sqlite import SqliteGallery
from faceprint.testing import fake_embedding_spec
from faceprint.types import Faceprint
from faceprint.video.pipeline import (
    VideoOptions,
    analyze_video,
    analyze_videos,
)
from faceprint.video.synthetic import SceneFace, render_scene, write_video

RED, GREEN, BLUE, YELLOW = (200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)
SIZE_WH = (320, 240)
SEGMENT_KEYS = {
    "id", "media_type", "frame_start", "frame_end", "source", "module", "meta", "thumbnail", "detections",
    "time_start", "time_end", "tc_start", "tc_end",
}  # fmt: skip
META_KEYS = {
    "person", "class_id", "closest_person", "mean_distance", "mean_similarity", "indexed_identity",
    "closest_k_persons",
}  # fmt: skip


def square(rgb: tuple[int, int, int], start: int, end: int, xy0: tuple[int, int], xy1: tuple[int, int]) -> SceneFace:
    return SceneFace(np.full((50, 50, 3), rgb, np.uint8), start, end, xy0, xy1, height_px=50)


def scene() -> list[SceneFace]:
    """Red (Ada) 10-80 moving right; blue (Bob) 40-120 moving left, crossing red's row lower down;
    yellow (never enrolled) 0-30 and again 100-140."""
    return [
        square(RED, 10, 80, (10, 20), (250, 40)),
        square(BLUE, 40, 120, (260, 150), (10, 130)),
        square(YELLOW, 0, 30, (130, 90), (150, 90)),
        square(YELLOW, 100, 140, (60, 90), (40, 80)),
    ]


def make_video(
    path: Path,
    fps: Fraction,
    faces: list[SceneFace],
    frames: int = 150,
    codec: str = "libx264",
    size_wh: tuple[int, int] = SIZE_WH,
) -> Path:
    write_video(path, render_scene(size_wh, frames, faces), fps=fps, codec=codec, bit_rate=2_000_000)
    return path


@pytest.fixture
def staff(tmp_path: Path, make_print: Callable[[Any], Faceprint]) -> SqliteGallery:
    gallery = SqliteGallery.create(tmp_path / "staff.sqlite", contract_id=fake_embedding_spec().contract_id)
    for name, colour in [("Ada", RED), ("Bob", BLUE), ("Cy", GREEN)]:
        person = gallery.add_person(name)
        gallery.enroll(person.person_id, [make_print(colour)])
    return gallery


def by_person(result: dict[str, Any]) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    for segment in result["data"]:
        out.setdefault(segment["meta"]["person"], []).append((segment["frame_start"], segment["frame_end"]))
    return out


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_segments_persons_times_at_25_fps(tmp_path: Path, colour_engine: Any, staff: SqliteGallery, codec: str) -> None:
    video = make_video(tmp_path / f"clip-{codec}.mkv", Fraction(25), scene(), codec=codec)
    report = analyze_videos([video], colour_engine, [staff], options=VideoOptions(cluster_unknowns=True))
    result = json.loads(json.dumps(report.to_deepva()))  # what -o writes
    assert by_person(result) == {"Unknown #1": [(0, 30), (100, 140)], "Ada": [(10, 80)], "Bob": [(40, 120)]}
    # Sampled at 5 fps from 25 fps: every fifth frame only.
    assert sorted(set(colour_engine.detected_frames)) == list(range(0, 150, 5))
    assert colour_engine.max_sides == [600]
    ada = next(s for s in result["data"] if s["meta"]["person"] == "Ada")
    assert set(ada) == SEGMENT_KEYS and set(ada["meta"]) == META_KEYS
    assert (ada["media_type"], ada["module"], ada["source"]) == ("video", "face_recognition", str(video))
    assert (ada["time_start"], ada["time_end"]) == (0.4, 3.2)
    assert (ada["tc_start"], ada["tc_end"]) == ("00:00:00:10", "00:00:03:05")
    assert ada["meta"]["class_id"] == staff.find_persons("Ada")[0].person_id
    assert ada["meta"]["closest_person"] == "Ada" and ada["meta"]["indexed_identity"] is None
    assert ada["meta"]["mean_similarity"] == pytest.approx(1.0, abs=1e-3)
    assert ada["meta"]["mean_distance"] == pytest.approx(0.0, abs=0.05)
    assert [p["person"] for p in ada["meta"]["closest_k_persons"]] == ["Ada", "Bob", "Cy"]
    assert [d["frame_index"] for d in ada["detections"]] == list(range(10, 81, 5))
    assert {d["type"] for d in ada["detections"]} == {"face_bbox"}
    # Boxes sit on the square: at frame 10 its top-left is (10, 20), 50 px a side.
    first = ada["detections"][0]["data"]
    assert first == pytest.approx({"x": 10 / 320, "y": 20 / 240, "w": 50 / 320, "h": 50 / 240}, abs=0.02)
    thumb = Image.open(io.BytesIO(base64.b64decode(ada["thumbnail"]["image"])))
    assert thumb.format == "JPEG"
    centre = np.asarray(thumb.convert("RGB"))[thumb.height // 2, thumb.width // 2].astype(int)
    assert np.abs(centre - np.array(RED)).max() < 45
    unknown = [s for s in result["data"] if s["meta"]["person"] == "Unknown #1"]
    assert all(s["meta"]["class_id"] is None and s["meta"]["closest_person"] is not None for s in unknown)
    summary = result["summary"][0]
    assert summary["source"] == str(video) and summary["media_type"] == "video"
    assert summary["info"] == {"fps": 25.0, "resolution": "320x240", "total_frames": 150, "duration": 6.0}
    assert {i["label"] for i in summary["items"]} == {"Ada", "Bob", "Unknown #1"}
    assert summary["processing"]["error"] is None and summary["processing"]["corrupt_frames"] == 0
    # Only padded face crops were embedded, never whole frames.
    assert all(shape[0] < 240 and shape[1] < 320 for shape in colour_engine.embedded_shapes)
    assert len(colour_engine.embedded_shapes) <= 3 * report.videos[0].tracks


def test_ntsc_times_and_drop_frame_timecodes(tmp_path: Path, colour_engine: Any, staff: SqliteGallery) -> None:
    ntsc = Fraction(30000, 1001)
    faces = [square(RED, 12, 1900, (10, 10), (100, 60))]  # over a minute: the drop-frame step shows
    video = make_video(tmp_path / "ntsc.mp4", ntsc, faces, frames=1910, size_wh=(160, 120))
    result = analyze_videos([video], colour_engine, [staff], options=VideoOptions(every_n_frames=6)).to_deepva()
    (segment,) = result["data"]
    assert (segment["frame_start"], segment["frame_end"]) == (12, 1896)
    assert segment["time_start"] == float(Fraction(12 * 1001, 30000))
    assert segment["time_end"] == float(Fraction(1896 * 1001, 30000))
    assert (segment["tc_start"], segment["tc_end"]) == ("00:00:00;12", "00:01:03;08")
    assert result["summary"][0]["info"]["fps"] == pytest.approx(29.97, abs=1e-3)


def test_unknowns_without_clustering_are_separate(tmp_path: Path, colour_engine: Any, staff: SqliteGallery) -> None:
    video = make_video(tmp_path / "clip.mp4", Fraction(25), scene())
    result = analyze_videos([video], colour_engine, [staff]).to_deepva()
    assert by_person(result)["unknown"] == [(0, 30), (100, 140)]


def test_gap_setting_joins_or_splits_a_person(tmp_path: Path, colour_engine: Any, staff: SqliteGallery) -> None:
    faces = [square(RED, 0, 40, (20, 20), (60, 20)), square(RED, 70, 120, (60, 20), (100, 30))]  # away 1.2 s
    video = make_video(tmp_path / "gap.mp4", Fraction(25), faces)
    joined = analyze_videos([video], colour_engine, [staff], options=VideoOptions(segment_gap_s=Fraction(2)))
    split = analyze_videos([video], colour_engine, [staff], options=VideoOptions(segment_gap_s=Fraction(1)))
    assert by_person(joined.to_deepva()) == {"Ada": [(0, 120)]}
    assert by_person(split.to_deepva()) == {"Ada": [(0, 40), (70, 120)]}


def test_cannot_link_keeps_simultaneous_unknowns_apart(
    tmp_path: Path, colour_engine: Any, make_print: Callable[[Any], Faceprint]
) -> None:
    """Two unknown yellow squares on screen together look alike but are two people."""
    empty = SqliteGallery.create(tmp_path / "empty.sqlite", contract_id=fake_embedding_spec().contract_id)
    faces = [square(YELLOW, 0, 60, (10, 10), (40, 10)), square((205, 195, 35), 0, 60, (200, 150), (230, 150))]
    video = make_video(tmp_path / "twins.mp4", Fraction(25), faces)
    result = analyze_videos([video], colour_engine, [empty], options=VideoOptions(cluster_unknowns=True)).to_deepva()
    assert sorted(by_person(result)) == ["Unknown #1", "Unknown #2"]


def test_index_unknowns_gives_ids_stable_across_videos(
    tmp_path: Path, colour_engine: Any, staff: SqliteGallery
) -> None:
    sink = SqliteGallery.create(tmp_path / "unknowns.sqlite")
    first = make_video(tmp_path / "a.mp4", Fraction(25), scene())
    second = make_video(tmp_path / "b.mp4", Fraction(25), [square(YELLOW, 20, 90, (30, 30), (90, 60))])
    report = analyze_videos([first, second], colour_engine, [staff], index_unknowns_into=sink)
    result = report.to_deepva()
    yellow = [s for s in result["data"] if s["meta"]["indexed_identity"] is not None]
    assert len({s["meta"]["indexed_identity"] for s in yellow}) == 1  # one person in both videos
    assert {s["source"] for s in yellow} == {str(first), str(second)}
    (person,) = sink.persons()
    assert person.is_unknown and yellow[0]["meta"]["indexed_identity"] == person.person_id
    assert yellow[0]["meta"]["person"] == person.name
    assert report.videos[0].new_unknowns and not report.videos[1].new_unknowns


def test_max_distance_cut_off_and_top_k_off(tmp_path: Path, colour_engine: Any, staff: SqliteGallery) -> None:
    video = make_video(tmp_path / "clip.mp4", Fraction(25), scene())
    strict = VideoOptions(max_distance=0.0001, top_k=0)
    result = analyze_videos([video], colour_engine, [staff], options=strict).to_deepva()
    # The codec shifts colours slightly: at a near-zero distance nobody is accepted.
    assert set(by_person(result)) == {"unknown"}
    assert all(s["meta"]["closest_k_persons"] == [] for s in result["data"])
    assert {s["meta"]["closest_person"] for s in result["data"]} >= {"Ada", "Bob"}


def test_a_bad_video_in_a_list_does_not_stop_the_others(
    tmp_path: Path, colour_engine: Any, staff: SqliteGallery
) -> None:
    good = make_video(tmp_path / "good.mp4", Fraction(25), scene())
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    report = analyze_videos([bad, good], colour_engine, [staff])
    assert report.failed == 1
    result = report.to_deepva()
    assert [s["processing"]["error"]["code"] if s["processing"]["error"] else None for s in result["summary"]] == [
        "not_a_video",
        None,
    ]
    assert result["summary"][0]["info"] is None
    assert {s["source"] for s in result["data"]} == {str(good)}


def test_rotated_phone_video_boxes_are_upright(tmp_path: Path, colour_engine: Any, staff: SqliteGallery) -> None:
    video = tmp_path / "phone.mp4"
    frames = render_scene(SIZE_WH, 30, [square(RED, 0, 29, (20, 30), (20, 30))])
    write_video(video, frames, fps=Fraction(25), rotation_deg=-90)  # shown turned 90 degrees clockwise
    result = analyze_videos([video], colour_engine, [staff]).to_deepva()
    assert result["summary"][0]["info"]["resolution"] == "240x320"
    box = result["data"][0]["detections"][0]["data"]
    # Clockwise turn: the square's left edge at x=20 of 320 becomes its top at y=20/320.
    assert box["y"] == pytest.approx(20 / 320, abs=0.02)
    assert box["x"] == pytest.approx((240 - 30 - 50) / 240, abs=0.02)


def test_cancel_stops_the_run(tmp_path: Path, colour_engine: Any, staff: SqliteGallery) -> None:
    video = make_video(tmp_path / "clip.mp4", Fraction(25), scene())
    cancel = threading.Event()
    seen: list[int] = []

    def progress(p: Any) -> None:
        seen.append(p.frames_done)
        if p.frames_done > 50:
            cancel.set()

    with pytest.raises(CancelledError):
        analyze_video(video, colour_engine, [staff], progress=progress, cancel=cancel)
    assert seen and max(seen) < 150


def test_progress_counts_frames(tmp_path: Path, colour_engine: Any, staff: SqliteGallery) -> None:
    video = make_video(tmp_path / "clip.mp4", Fraction(25), scene())
    seen: list[tuple[int, int]] = []
    analyze_video(video, colour_engine, [staff], progress=lambda p: seen.append((p.frames_done, p.total_frames)))
    assert seen[-1] == (150, 150)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"face_detection_scale": 99},
        {"face_detection_scale": 2001},
        {"sample_fps": Fraction(5), "every_n_frames": 2},
        {"min_similarity": 0.5, "max_distance": 0.5},
        {"max_distance": 2.5},
        {"top_k": -1},
        {"chips_per_track": 0},
    ],
)
def test_options_are_validated_in_the_library(kwargs: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        VideoOptions(**kwargs)


def test_detection_on_downsized_frames_gives_full_frame_boxes(
    tmp_path: Path, colour_engine: Any, staff: SqliteGallery
) -> None:
    video = make_video(tmp_path / "clip.mp4", Fraction(25), scene())
    full = analyze_videos([video], colour_engine, [staff]).to_deepva()
    small = analyze_videos([video], colour_engine, [staff], options=VideoOptions(face_detection_scale=160))
    assert colour_engine.max_sides == [600, 160]
    ada_full = next(s for s in full["data"] if s["meta"]["person"] == "Ada")
    ada_small = next(s for s in small.to_deepva()["data"] if s["meta"]["person"] == "Ada")
    assert [d["frame_index"] for d in ada_small["detections"]] == [d["frame_index"] for d in ada_full["detections"]]
    for a, b in zip(ada_small["detections"], ada_full["detections"], strict=True):
        assert a["data"] == pytest.approx(b["data"], abs=0.01)
    # Chips are still cut from the full frame: 50 px squares with their padding, not 25 px ones.
    assert max(shape[0] for shape in colour_engine.embedded_shapes) >= 100


def test_corrupt_frames_are_counted_and_a_cut_file_is_flagged(
    tmp_path: Path, colour_engine: Any, staff: SqliteGallery
) -> None:
    import av

    video = tmp_path / "corrupt.avi"
    rng = np.random.default_rng(3)
    faces = [square(RED, 0, 99, (20, 20), (200, 100))]
    with av.open(str(video), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=25, options={"g": "10"})
        stream.width, stream.height, stream.pix_fmt, stream.bit_rate = 320, 240, "yuv420p", 2_000_000
        for i, image in enumerate(render_scene(SIZE_WH, 100, faces)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                if packet.pts in (42, 43):  # noise instead of two frames in the middle
                    noise = av.Packet(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
                    noise.pts, noise.dts, noise.time_base, noise.stream = (
                        packet.pts,
                        packet.dts,
                        packet.time_base,
                        stream,
                    )
                    packet = noise
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    result = analyze_videos([video], colour_engine, [staff]).to_deepva()
    processing = result["summary"][0]["processing"]
    assert processing["corrupt_frames"] == 2 and processing["error"] is None and not processing["truncated"]
    assert by_person(result) == {"Ada": [(0, 95)]}  # the rest processed, indices unchanged

    cut = tmp_path / "cut.mkv"
    full = make_video(tmp_path / "full.mkv", Fraction(25), faces, frames=100, codec="mpeg4")
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    result = analyze_videos([cut], colour_engine, [staff]).to_deepva()
    processing = result["summary"][0]["processing"]
    assert processing["truncated"] and processing["warning"]["code"] == "truncated_video"
    (segment,) = result["data"]
    assert segment["frame_start"] == 0 and segment["frame_end"] < 99


def test_without_galleries_everyone_is_unknown(tmp_path: Path, colour_engine: Any) -> None:
    video = make_video(tmp_path / "clip.mp4", Fraction(25), scene())
    result = analyze_videos([video], colour_engine, [], options=VideoOptions(cluster_unknowns=True)).to_deepva()
    assert sorted(by_person(result)) == ["Unknown #1", "Unknown #2", "Unknown #3"]
    assert all(s["meta"]["closest_person"] is None and s["meta"]["mean_distance"] is None for s in result["data"])
