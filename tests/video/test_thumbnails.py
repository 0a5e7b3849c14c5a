"""``VideoOptions(thumbnails=False)``: the same segments, ``"thumbnail": null``, and no JPEG ever encoded."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av", reason="PyAV is in the video extra")

from faceprint.video import segments
from faceprint.video.pipeline import VideoOptions, analyze_videos, default_thumbnails
from faceprint.video.synthetic import SceneFace, render_scene, write_video

from .conftest import RED, ColourVideoEngine


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    face = SceneFace(np.full((40, 40, 3), RED, np.uint8), 5, 40, (20, 20), (100, 60), 40)
    write_video(path, render_scene((160, 120), 50, [face]), fps=Fraction(25))
    return path


def test_no_thumbnails_means_none_encoded(monkeypatch: pytest.MonkeyPatch, clip: Path) -> None:
    with_thumbnails = analyze_videos([clip], ColourVideoEngine(), []).to_deepva()

    def never(*args: object, **kwargs: object) -> segments.Thumbnail:
        raise AssertionError("a thumbnail was encoded")

    monkeypatch.setattr(segments.Thumbnail, "from_image", classmethod(never))
    without = json.loads(
        json.dumps(analyze_videos([clip], ColourVideoEngine(), [], options=VideoOptions(thumbnails=False)).to_deepva())
    )
    assert with_thumbnails["data"] and all(s["thumbnail"] is not None for s in with_thumbnails["data"])
    assert [s["thumbnail"] for s in without["data"]] == [None] * len(with_thumbnails["data"])
    strip = [{k: v for k, v in s.items() if k not in ("thumbnail", "id")} for s in with_thumbnails["data"]]
    assert [{k: v for k, v in s.items() if k not in ("thumbnail", "id")} for s in without["data"]] == strip
    assert without["summary"][0]["processing"]["options"]["thumbnails"] is False


@pytest.mark.parametrize(
    ("confidential", "asked", "expected"),
    [(False, None, True), (True, None, False), (True, True, True), (False, False, False), (True, False, False)],
)
def test_default_thumbnails(confidential: bool, asked: bool | None, expected: bool) -> None:
    assert default_thumbnails(confidential=confidential, asked=asked) is expected
