"""The video run on the real dlib models and real faces (../shared/data), through the analysis engine.

Synthetic clips are made here: faces cut from photos of faces-small are pasted into known frame ranges,
moving, two at once, one person never enrolled. The galleries are enrolled from *other* photos of the same
people (labels.csv). The shared Hamilton clip is checked against its two reference photos.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("av", reason="PyAV is in the video extra")

from PIL import Image

from faceprint.analyze import AnalyzeItem, Analyzer
from faceprint.gallery.sqlite import SqliteGallery
from faceprint.io.image import load_image
from faceprint.pipeline import PipelineConfig
from faceprint.video.engine import AnalyzerVideoEngine, for_video
from faceprint.video.pipeline import VideoOptions, analyze_videos
from faceprint.video.synthetic import SceneFace, render_scene, write_video
from faceprint.video.timecode import smpte_timecode

pytestmark = pytest.mark.integration

SIZE_WH = (640, 360)
FACE_HEIGHT_PX = 150


@pytest.fixture(scope="module")
def analyzer() -> Iterator[Analyzer]:
    from faceprint.errors import ModelError

    try:
        with Analyzer(for_video(PipelineConfig(upsample=0)), workers=1) as engine:
            yield engine
    except ModelError as err:  # pragma: no cover - weights missing
        pytest.skip(f"real model weights unavailable: {err}")


def face_cut(analyzer: Analyzer, path: Path) -> np.ndarray:
    """The photo's main face with some context around it."""
    (result,) = analyzer.analyze([AnalyzeItem(str(path), path)])
    assert result.selected is not None, path
    left, top, right, bottom = result.selected.detection.bbox_xyxy
    image = load_image(path)
    margin = 0.45 * (right - left)
    box = (max(0, int(left - margin)), max(0, int(top - margin)), int(right + margin), int(bottom + margin))
    return np.asarray(Image.fromarray(image).crop(box))


@pytest.fixture(scope="module")
def faces(analyzer: Analyzer, data_dir: Path) -> dict[str, np.ndarray]:
    root = data_dir / "faces-small" / "face_recognition" / "examples" / "knn_examples"
    return {
        "obama": face_cut(analyzer, root / "test" / "obama1.jpg"),
        "biden": face_cut(analyzer, root / "train" / "biden" / "biden2.jpg"),
        "alex": face_cut(analyzer, root / "test" / "alex_lacamoire1.jpg"),  # never enrolled
    }


@pytest.fixture(scope="module")
def gallery(analyzer: Analyzer, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SqliteGallery:
    root = data_dir / "faces-small" / "face_recognition" / "examples" / "knn_examples" / "train"
    photos = {"obama": ["obama/obama.jpg", "obama/obama2.jpg"], "biden": ["biden/biden.jpg"]}
    gallery = SqliteGallery.create(tmp_path_factory.mktemp("gallery") / "people.sqlite")
    for name, files in photos.items():
        results = list(analyzer.analyze([AnalyzeItem(f, root / f) for f in files]))
        person = gallery.add_person(name)
        gallery.enroll(person.person_id, [r.selected.faceprint for r in results if r.selected and r.selected.faceprint])
    return gallery


def scene(faces: dict[str, np.ndarray]) -> dict[str, SceneFace]:
    """Obama 0-60 moving right along the top; Biden 30-99 moving left along the bottom (both on screen
    30-60); Alex (never enrolled) 65-99, still."""
    return {
        "obama": SceneFace(faces["obama"], 0, 60, (20, 10), (230, 20), FACE_HEIGHT_PX),
        "biden": SceneFace(faces["biden"], 30, 99, (470, 205), (260, 200), FACE_HEIGHT_PX),
        "alex": SceneFace(faces["alex"], 65, 99, (60, 20), (60, 20), FACE_HEIGHT_PX),
    }


def frame_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]) + 1)
    return inter / (max(a[1], b[1]) - min(a[0], b[0]) + 1)


def run(analyzer: Analyzer, gallery: SqliteGallery, video: Path, **options: Any) -> dict[str, Any]:
    report = analyze_videos([video], AnalyzerVideoEngine(analyzer), [gallery], options=VideoOptions(**options))
    return json.loads(json.dumps(report.to_deepva()))


@pytest.mark.parametrize(
    ("fps", "codec", "suffix"), [(Fraction(25), "libx264", ".mp4"), (Fraction(30000, 1001), "mpeg4", ".mkv")]
)
def test_people_entering_and_leaving(
    analyzer: Analyzer,
    gallery: SqliteGallery,
    faces: dict[str, np.ndarray],
    tmp_path: Path,
    fps: Fraction,
    codec: str,
    suffix: str,
) -> None:
    people = scene(faces)
    video = tmp_path / f"people{suffix}"
    write_video(video, render_scene(SIZE_WH, 100, list(people.values())), fps=fps, codec=codec, bit_rate=3_000_000)
    result = run(analyzer, gallery, video, cluster_unknowns=True)

    segments = {s["meta"]["person"]: s for s in result["data"]}
    assert sorted(segments) == ["Unknown #1", "biden", "obama"], [(s["meta"], s["frame_start"]) for s in result["data"]]
    truth = {"obama": "obama", "biden": "biden", "Unknown #1": "alex"}
    for label, segment in segments.items():
        face = people[truth[label]]
        found = (segment["frame_start"], segment["frame_end"])
        assert frame_iou(found, (face.start_frame, face.end_frame)) >= 0.8, (label, found)
        # Exact times and timecodes from the integer frames.
        assert segment["time_start"] == float(Fraction(segment["frame_start"]) / fps)
        assert segment["time_end"] == float(Fraction(segment["frame_end"]) / fps)
        assert segment["tc_start"] == smpte_timecode(segment["frame_start"], fps)
        assert segment["tc_end"] == smpte_timecode(segment["frame_end"], fps)
        # Every box sits on the pasted face of that frame.
        for detection in segment["detections"]:
            box = detection["data"]
            cx, cy = (box["x"] + box["w"] / 2) * SIZE_WH[0], (box["y"] + box["h"] / 2) * SIZE_WH[1]
            x, y = face.position(detection["frame_index"])
            height, width = face.scaled().shape[:2]
            assert x <= cx <= x + width and y <= cy <= y + height, (label, detection)
        thumb = Image.open(io.BytesIO(base64.b64decode(segment["thumbnail"]["image"])))
        assert thumb.format == "JPEG" and min(thumb.size) >= 40
    for name in ("obama", "biden"):
        meta = segments[name]["meta"]
        assert meta["class_id"] == gallery.find_persons(name)[0].person_id
        assert 0.0 <= meta["mean_distance"] < 0.45 and meta["mean_similarity"] > 0.9
        assert meta["closest_k_persons"][0]["person"] == name
    unknown = segments["Unknown #1"]["meta"]
    assert unknown["class_id"] is None and unknown["indexed_identity"] is None
    assert result["summary"][0]["info"]["total_frames"] == 100
    if fps == Fraction(30000, 1001):
        assert ";" in segments["biden"]["tc_end"]  # drop-frame notation at 29.97


def test_hamilton_clip(analyzer: Analyzer, examples_dir: Path, tmp_path: Path) -> None:
    gallery = SqliteGallery.create(tmp_path / "hamilton.sqlite")
    references = {"Lin-Manuel Miranda": "lin-manuel-miranda.png", "Alex Lacamoire": "alex-lacamoire.png"}
    for name, file in references.items():
        (result,) = analyzer.analyze([AnalyzeItem(file, examples_dir / file)])
        assert result.selected is not None and result.selected.faceprint is not None
        gallery.enroll(gallery.add_person(name).person_id, [result.selected.faceprint])
    result = run(analyzer, gallery, examples_dir / "short_hamilton_clip.mp4")
    summary = result["summary"][0]
    assert summary["info"] == {
        "fps": 29.97,
        "resolution": "640x360",
        "total_frames": 275,
        "duration": pytest.approx(9.1758, abs=1e-3),
    }
    lin = [s for s in result["data"] if s["meta"]["person"] == "Lin-Manuel Miranda"]
    assert lin, [s["meta"] for s in result["data"]]
    # He is on stage, close up, from about 2.8 s (frame 84) for several seconds.
    longest = max(lin, key=lambda s: s["frame_end"] - s["frame_start"])
    assert longest["frame_start"] <= 96 and longest["frame_end"] >= 200
    assert longest["tc_start"].count(";") == 1  # 29.97 fps: drop-frame timecode
    assert longest["meta"]["mean_similarity"] > 0.93
    # Nobody else is taken for him or for Alex Lacamoire (the audience at the end is not enrolled).
    assert all(s["meta"]["person"] in ("Lin-Manuel Miranda", "Alex Lacamoire", "unknown") for s in result["data"])


def test_faceprint_video_command(gallery: SqliteGallery, faces: dict[str, np.ndarray], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from faceprint.cli.main import app

    clip = tmp_path / "obama.mp4"
    obama = SceneFace(faces["obama"], 10, 59, (40, 40), (300, 60), FACE_HEIGHT_PX)
    write_video(clip, render_scene(SIZE_WH, 60, [obama]), fps=Fraction(25))
    out = tmp_path / "results.json"
    args = ["video", str(clip), "--gallery", str(gallery.path), "-o", str(out), "--workers", "1", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (segment,) = json.loads(out.read_text())["data"]
    assert segment["meta"]["person"] == "obama"
    assert (segment["frame_start"], segment["frame_end"]) == (10, 55)
    assert (segment["tc_start"], segment["tc_end"]) == ("00:00:00:10", "00:00:02:05")
