"""The detection cascade, the lazy fallback stage and the HOG stages' shared native detector, with fakes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceprint.detect.cascade import CascadeDetector
from faceprint.detect.center import ASSUMED_CENTER_CROP, CenterCropDetector
from faceprint.detect.dlib_hog import HOG_CACHE_NAME, LOW_CONFIDENCE, DlibHogDetector, load_frontal_face_detector
from faceprint.detect.lazy import LazyDetector
from faceprint.models.dlib_to_onnx import ConvertedModelCache
from faceprint.types import Detection, RGBImage


class StageFake:
    """Returns ``boxes`` (one Detection each) and records every call."""

    def __init__(self, name: str, boxes: list[tuple[float, float, float, float]], calls: list[str]) -> None:
        self._name = name
        self.boxes = boxes
        self.calls = calls

    @property
    def name(self) -> str:
        return self._name

    def detect(self, image: RGBImage) -> list[Detection]:
        self.calls.append(self._name)
        return [Detection(bbox_xyxy=b, score=1.0, detector=self._name) for b in self.boxes]


IMAGE = np.zeros((40, 40, 3), np.uint8)
BOX = (1.0, 2.0, 21.0, 22.0)


@pytest.mark.parametrize(
    ("found_by", "expected_calls", "winner"),
    [
        ((True, True, True), ["a"], "a"),
        ((False, True, True), ["a", "b"], "b"),
        ((False, False, True), ["a", "b", "c"], "c"),
        ((False, False, False), ["a", "b", "c"], None),
    ],
)
def test_the_first_stage_that_finds_a_face_wins(
    found_by: tuple[bool, bool, bool], expected_calls: list[str], winner: str | None
) -> None:
    calls: list[str] = []
    stages = [StageFake(n, [BOX] if hit else [], calls) for n, hit in zip("abc", found_by, strict=True)]
    found = CascadeDetector(stages).detect(IMAGE)
    assert calls == expected_calls  # in order, and nothing after the winner runs
    assert [d.detector for d in found] == ([] if winner is None else [winner])


def test_a_cascade_is_named_after_its_stages_and_needs_one() -> None:
    calls: list[str] = []
    assert CascadeDetector([StageFake("a", [], calls), StageFake("b", [], calls)]).name == "cascade(a,b)"
    with pytest.raises(ValueError, match="at least one"):
        CascadeDetector([])


def test_a_lazy_stage_is_built_only_when_a_photo_reaches_it() -> None:
    calls: list[str] = []
    built: list[str] = []

    def build() -> StageFake:
        built.append("mmod")
        return StageFake("mmod", [BOX], calls)

    lazy = LazyDetector("mmod", build)
    cascade = CascadeDetector([StageFake("hog", [BOX], calls), lazy])
    assert cascade.name == "cascade(hog,mmod)"  # known before anything is built
    cascade.detect(IMAGE)
    assert built == [] and lazy.built is None
    cascade.stages[0].boxes = []  # type: ignore[attr-defined]
    assert [d.detector for d in cascade.detect(IMAGE)] == ["mmod"]
    cascade.detect(IMAGE)
    assert built == ["mmod"]  # once
    assert lazy.built is lazy.get()


def test_a_lazy_stage_checks_the_name_it_promised() -> None:
    lazy = LazyDetector("dlib-mmod-onnx@1", lambda: StageFake("dlib-mmod@1", [], []))
    with pytest.raises(ValueError, match="built a detector named"):
        lazy.detect(IMAGE)


class FakeRect:
    def __init__(self, left: int, top: int, right: int, bottom: int) -> None:
        self._box = (left, top, right, bottom)

    def left(self) -> int:
        return self._box[0]

    def top(self) -> int:
        return self._box[1]

    def right(self) -> int:
        return self._box[2]

    def bottom(self) -> int:
        return self._box[3]


class FakeNativeHog:
    """dlib's ``fhog_object_detector.run`` API: rectangles (inclusive), scores, sub-detector indices."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, float]] = []

    def run(
        self, image: RGBImage, upsample: int, adjust_threshold: float
    ) -> tuple[list[FakeRect], list[float], list[int]]:
        self.runs.append((upsample, adjust_threshold))
        rects = [FakeRect(-5, 10, 19, 29), FakeRect(20, 0, 30, 9), FakeRect(100, 100, 120, 120)]
        return rects, [0.5, 1.5, 2.0], [0, 0, 0]


def test_hog_stages_share_one_native_detector_with_their_own_parameters() -> None:
    native = FakeNativeHog()
    plain = DlibHogDetector(upsample=1, native=native)
    weak = DlibHogDetector(upsample=2, adjust_threshold=-0.5, flags=(LOW_CONFIDENCE,), native=native)
    assert plain.native is weak.native is native
    found = plain.detect(IMAGE)
    weak_found = weak.detect(IMAGE)
    assert native.runs == [(1, 0.0), (2, -0.5)]
    # Best first; dlib's inclusive rectangles become exclusive boxes clipped to the image; outside ones dropped.
    assert [d.bbox_xyxy for d in found] == [(20.0, 0.0, 31.0, 10.0), (0.0, 10.0, 20.0, 30.0)]
    assert [d.score for d in found] == [1.5, 0.5]
    assert (plain.name, weak.name) == ("dlib-hog@1", "dlib-hog@2-0.5")
    assert all(d.flags == (LOW_CONFIDENCE,) and d.detector == "dlib-hog@2-0.5" for d in weak_found)
    with pytest.raises(ValueError, match="upsample"):
        DlibHogDetector(upsample=5, native=native)


def test_big_photos_are_upsampled_less_by_hog() -> None:
    native = FakeNativeHog()
    stage = DlibHogDetector(upsample=2, native=native, max_upsampled_px=16_000_000)
    stage.detect(np.zeros((1200, 1600, 3), np.uint8))  # doubled twice: 30.7 MP; once: 7.7 MP
    stage.detect(np.zeros((300, 400, 3), np.uint8))
    DlibHogDetector(upsample=2, native=native, max_upsampled_px=None).detect(np.zeros((1200, 1600, 3), np.uint8))
    assert [u for u, _ in native.runs] == [1, 2, 2]
    assert stage.name == "dlib-hog@2"  # the stage keeps its name: what it was asked to do


def test_the_centre_crop_is_a_flagged_last_resort() -> None:
    (found,) = CenterCropDetector().detect(np.zeros((100, 100, 3), np.uint8))
    assert found.flags == (ASSUMED_CENTER_CROP,) and found.bbox_xyxy == (28.0, 28.0, 72.0, 72.0)
    assert CenterCropDetector().detect(np.zeros((100, 400, 3), np.uint8)) == []  # not a face-shaped crop


def _runs_the_same(a: Any, b: Any, image: RGBImage) -> bool:
    # At a threshold of -2 dlib's HOG finds a handful of "faces" in noise: enough boxes to compare.
    ra, sa, _ = a.run(image, 1, -2.0)
    rb, sb, _ = b.run(image, 1, -2.0)
    assert len(ra) > 0
    return [str(r) for r in ra] == [str(r) for r in rb] and list(sa) == list(sb)


def test_the_built_in_hog_detector_is_serialised_once_and_loaded_after(tmp_path: Path) -> None:
    import dlib

    first = ConvertedModelCache(tmp_path / "converted")
    native = load_frontal_face_detector(first)
    assert first.conversions == 1 and (tmp_path / "converted" / HOG_CACHE_NAME).is_file()
    later = ConvertedModelCache(tmp_path / "converted")
    loaded = load_frontal_face_detector(later)
    assert later.conversions == 0 and later.digests.hashed_files == 0
    rng = np.random.default_rng(7)
    image = rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)
    assert _runs_the_same(loaded, dlib.get_frontal_face_detector(), image)
    assert _runs_the_same(native, loaded, image)


def test_an_unwritable_cache_still_gives_the_built_in_hog_detector(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    blocked = ConvertedModelCache(tmp_path / "file" / "converted")  # cannot be created, even by root
    native = load_frontal_face_detector(blocked)
    rects, _, _ = native.run(np.zeros((80, 80, 3), np.uint8), 0, 0.0)
    assert len(rects) == 0


def test_a_damaged_serialised_hog_detector_is_not_used(tmp_path: Path) -> None:
    import dlib

    from faceprint.errors import ChecksumMismatchError

    load_frontal_face_detector(ConvertedModelCache(tmp_path))
    path = tmp_path / HOG_CACHE_NAME
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    recipe = {"source": "dlib.get_frontal_face_detector", "dlib_version": str(dlib.__version__)}
    with pytest.raises(ChecksumMismatchError):
        ConvertedModelCache(tmp_path).built_file(HOG_CACHE_NAME, recipe, lambda: b"")
    # The loader falls back to the compiled-in weights rather than run changed bytes.
    image = np.random.default_rng(3).integers(0, 255, (120, 120, 3), dtype=np.uint8)
    assert _runs_the_same(
        load_frontal_face_detector(ConvertedModelCache(tmp_path)), dlib.get_frontal_face_detector(), image
    )
