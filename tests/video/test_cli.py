"""``faceprint video`` through typer's CliRunner with the weight-free FakePipeline: files, exit codes, errors.

The real models drive the command in test_real_video.py.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

pytest.importorskip("av", reason="PyAV is in the video extra")

from faceprint.cli.common import CliContext
from faceprint.cli.video import video
from faceprint.errors import EXIT_INPUT, EXIT_PARTIAL, EXIT_USAGE
from faceprint.gallery.sqlite import SqliteGallery
from faceprint.settings import load_settings
from faceprint.testing import fake_embedding_spec, fake_pipeline_factory
from faceprint.video.synthetic import SceneFace, render_scene, write_video

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(name="video")(video)
    app.command(name="other")(lambda: None)  # two commands, so "video" is a sub-command as in faceprint
    return app


@pytest.fixture(autouse=True)
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACEPRINT_GALLERY_DIR", str(tmp_path / "galleries"))


@pytest.fixture
def staff(tmp_path: Path) -> Path:
    path = tmp_path / "galleries" / "staff.sqlite"
    SqliteGallery.create(path, contract_id=fake_embedding_spec().contract_id).close()
    return path


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    face = SceneFace(np.full((40, 40, 3), (200, 30, 30), np.uint8), 5, 40, (20, 20), (100, 60), 40)
    write_video(path, render_scene((160, 120), 50, [face]), fps=Fraction(25))
    return path


def run(*args: str) -> tuple[int, str]:
    context = CliContext(settings=load_settings(), pipeline_factory=fake_pipeline_factory)
    result = runner.invoke(_app(), ["video", *args], obj=context)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_writes_deepva_json(tmp_path: Path, clip: Path, staff: Path) -> None:
    out = tmp_path / "results.json"
    code, output = run(str(clip), "-g", "staff", "-o", str(out), "--quiet", "--workers", "1")
    assert code == 0, output
    result = json.loads(out.read_text())
    assert set(result) == {"summary", "data"}
    (summary,) = result["summary"]
    assert summary["info"] == {"fps": 25.0, "resolution": "160x120", "total_frames": 50, "duration": 2.0}
    assert summary["processing"]["model_id"] == fake_embedding_spec().id
    assert result["data"] and all(s["module"] == "face_recognition" for s in result["data"])
    assert "clip.mp4" in output


def test_an_unreadable_video_in_the_list_is_reported_and_the_rest_done(tmp_path: Path, clip: Path, staff: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    out = tmp_path / "results.json"
    code, output = run(str(bad), str(clip), "-g", "staff", "-o", str(out), "-q", "--workers", "1")
    assert code == EXIT_PARTIAL, output
    summary = json.loads(out.read_text())["summary"]
    assert summary[0]["processing"]["error"]["code"] == "not_a_video"
    assert summary[1]["processing"]["error"] is None
    assert "not_a_video" in output


def test_only_unreadable_videos(tmp_path: Path, staff: Path) -> None:
    audio = tmp_path / "empty.mp4"
    audio.write_bytes(b"")
    out = tmp_path / "results.json"
    code, _ = run(str(audio), "-g", "staff", "-o", str(out), "-q", "--workers", "1")
    assert code == EXIT_INPUT
    assert json.loads(out.read_text())["data"] == []


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--sample-fps", "5", "--every-n-frames", "3"], EXIT_USAGE, "not both"),
        (["--face-detection-scale", "50"], EXIT_USAGE, "100-2000"),
        (["--min-similarity", "0.5", "--max-distance", "0.5"], EXIT_USAGE, "not both"),
        (["--top-k", "-1"], EXIT_USAGE, "top_k"),
        (["-g", "nobody"], EXIT_INPUT, "gallery_not_found"),
    ],
)
def test_user_errors_are_one_line(
    tmp_path: Path, clip: Path, staff: Path, args: list[str], code: int, message: str
) -> None:
    out = tmp_path / "results.json"
    exit_code, output = run(str(clip), "-o", str(out), "-q", *args)
    assert exit_code == code, output
    assert message in output
    assert not out.exists()


def test_output_must_not_be_an_input(clip: Path, staff: Path) -> None:
    code, output = run(str(clip), "-g", "staff", "-o", str(clip), "-q")
    assert code == EXIT_USAGE and "output_is_input" in output
