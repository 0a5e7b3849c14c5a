from __future__ import annotations

import csv
import io
import tarfile
from pathlib import Path

import pytest

from faceprint.demo import build_demo_dataset
from faceprint.errors import UsageError
from faceprint.testing import make_face_png


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_demo_from_the_users_photos(tmp_path: Path) -> None:
    photos = []
    for index, colour in enumerate([(200, 10, 10), (10, 200, 10), (10, 10, 200)]):
        path = tmp_path / f"p{index}.png"
        path.write_bytes(make_face_png(colour))
        photos.append(path)
    dataset = build_demo_dataset(tmp_path / "out", photos)
    members = _members(dataset.archive)
    rows = list(csv.reader(io.StringIO(members["demo/pairs.csv"].decode())))
    assert rows[0] == ["image_a", "image_b"]
    # every pair of the 3 photos, then the three failure demonstrations
    assert rows[1:4] == [["p0.png", "p1.png"], ["p0.png", "p2.png"], ["p1.png", "p2.png"]]
    assert [row[1] for row in rows[4:]] == ["broken.jpg", "landscape.png", "not-in-the-dataset.jpg"]
    assert dataset.rows == 6 and dataset.source == "your photos"
    assert members["demo/p0.png"] == photos[0].read_bytes()
    assert "demo/not-in-the-dataset.jpg" not in members


def test_demo_refuses_a_missing_photo(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        build_demo_dataset(tmp_path / "out", [tmp_path / "absent.jpg"])


def test_demo_without_shared_data_uses_a_shipped_portrait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib", reason="the fallback portrait ships with matplotlib")
    monkeypatch.chdir(tmp_path)  # no ../shared/data from here
    monkeypatch.delenv("FACEPRINT_DEMO_DATA", raising=False)
    dataset = build_demo_dataset(tmp_path / "out")
    members = _members(dataset.archive)
    assert "Grace Hopper" in dataset.source
    assert {"demo/hopper.jpg", "demo/hopper-mirrored.jpg", "demo/broken.jpg", "demo/pairs.csv"} <= set(members)
