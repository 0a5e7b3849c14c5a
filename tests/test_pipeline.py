"""The pipeline: face ranking, the cheap first pass, the detection rescale and the cascade it builds (with
small fakes, no weights), config validation, and end-to-end checks with the real dlib weights on real photos."""

from __future__ import annotations

import dataclasses
import io
import multiprocessing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from faceprint.compare import Comparator
from faceprint.detect.base import Detector
from faceprint.detect.cascade import CascadeDetector
from faceprint.detect.dlib_hog import DlibHogDetector
from faceprint.errors import ContractMismatchError, UsageError
from faceprint.io.image import decode_image, load_image
from faceprint.pipeline import (
    FaceSelection,
    Pipeline,
    PipelineConfig,
    build_detector,
    face_prominence,
    face_size_px,
    rank_faces,
    with_overrides,
)
from faceprint.testing import (
    FAKE_MODEL_ID,
    FakePipeline,
    crashing_pipeline_factory,
    fake_embedding_spec,
    fake_landmarks,
    make_blank_png,
    make_face_png,
    make_group_png,
    make_off_centre_group_png,
    make_two_face_png,
)
from faceprint.types import Detection, Faceprint


def _largest(pipeline: Any, path: Path) -> Faceprint:
    faceprint, found = pipeline.embed_largest(load_image(path))
    assert found and faceprint is not None, f"no face in {path.name}"
    return faceprint


@pytest.mark.integration
def test_same_person(real_pipeline: Any, examples_dir: Path) -> None:
    result = real_pipeline.compare(
        _largest(real_pipeline, examples_dir / "obama.jpg"), _largest(real_pipeline, examples_dir / "obama2.jpg")
    )
    print(f"obama vs obama2: {result}")
    assert result.is_match and result.probability > 0.9


@pytest.mark.integration
def test_different_people(real_pipeline: Any, examples_dir: Path) -> None:
    result = real_pipeline.compare(
        _largest(real_pipeline, examples_dir / "obama.jpg"), _largest(real_pipeline, examples_dir / "biden.jpg")
    )
    print(f"obama vs biden: {result}")
    assert not result.is_match and result.probability < 0.1


@pytest.mark.integration
def test_four_resolutions_agree(real_pipeline: Any, examples_dir: Path) -> None:
    prints = [_largest(real_pipeline, examples_dir / f"obama-{r}.jpg") for r in ("240p", "480p", "720p", "1080p")]
    for a in prints:
        for b in prints:
            result = real_pipeline.compare(a, b)
            assert result.is_match and result.similarity > 0.95


@pytest.mark.integration
def test_several_faces_are_all_found_largest_first(real_pipeline: Any, examples_dir: Path) -> None:
    image = load_image(examples_dir / "two_people.jpg")
    faces = real_pipeline.embed_faces(image)
    assert len(faces) == 2
    assert face_size_px(faces[0].detection) >= face_size_px(faces[1].detection)
    assert all(f.detection.landmarks_xy is not None and len(f.detection.landmarks_xy) == 5 for f in faces)
    assert not real_pipeline.compare(faces[0].faceprint, faces[1].faceprint).is_match
    largest, found = real_pipeline.embed_largest(image)
    assert found and largest is not None
    assert real_pipeline.compare(largest, faces[0].faceprint).similarity > 0.99


@pytest.mark.integration
def test_no_face_in_a_plain_picture(real_pipeline: Any) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (400, 300), (120, 130, 140)).save(buf, "PNG")
    faceprint, found = real_pipeline.embed_largest(decode_image(buf.getvalue()))
    assert faceprint is None and not found
    assert real_pipeline.detect_faces(decode_image(buf.getvalue())) == []


@pytest.mark.integration
def test_exif_rotated_photo_gives_the_same_face(real_pipeline: Any, examples_dir: Path, tmp_path: Path) -> None:
    upright = load_image(examples_dir / "obama.jpg")
    rotated = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # stored sideways…
    exif = Image.Exif()
    exif[0x0112] = 6  # …with the tag that says "turn me 90° clockwise"
    path = tmp_path / "rotated.jpg"
    rotated.save(path, "JPEG", quality=95, exif=exif.tobytes())
    decoded = load_image(path)
    assert decoded.shape == upright.shape
    result = real_pipeline.compare(_largest(real_pipeline, examples_dir / "obama.jpg"), _largest(real_pipeline, path))
    assert result.similarity > 0.97


@pytest.mark.integration
def test_batch_matches_single_and_chips_have_sdk_sizes(real_pipeline: Any, examples_dir: Path) -> None:
    image = load_image(examples_dir / "obama.jpg")
    detection = real_pipeline.detect_faces(image)[0]
    chip_150 = real_pipeline.extract_aligned_face(image, detection, size=150)
    chip_112 = real_pipeline.extract_aligned_face(image, detection, size=112)
    assert chip_150.shape == (150, 150, 3) and chip_112.shape == (112, 112, 3)
    single = real_pipeline.embed(chip_150)
    batch = real_pipeline.embed_batch([chip_150, chip_150[:, ::-1].copy(), chip_150])
    assert np.allclose(single.vector, batch[0].vector, atol=1e-5)
    assert np.allclose(batch[0].vector, batch[2].vector, atol=1e-5)
    assert single.dim == 128 and single.model_id == "dlib-resnet-v1"
    assert single.model_options["landmarks"] == "dlib-landmarks-5"
    restored = Faceprint.from_json(single.to_json())
    assert real_pipeline.compare(single, restored).similarity == pytest.approx(1.0, abs=1e-6)
    quantised = Faceprint.from_int16(single.to_int16())
    assert real_pipeline.compare(single, quantised).similarity == pytest.approx(1.0, abs=1e-4)


# --- unit tests with fakes (no weights) --------------------------------------------------------------------


class RecordingDetector:
    """Returns fixed boxes (in the pixels of the image it gets) and records the size of every image."""

    def __init__(self, name: str, boxes: list[tuple[float, float, float, float]]) -> None:
        self._name = name
        self.boxes = boxes
        self.seen_wh: list[tuple[int, int]] = []

    @property
    def name(self) -> str:
        return self._name

    def detect(self, image: Any) -> list[Detection]:
        self.seen_wh.append((image.shape[1], image.shape[0]))
        return [Detection(bbox_xyxy=b, score=1.0, detector=self._name) for b in self.boxes]


class BoxLandmarker:
    """Five points spread over the box (the pipeline's ranking only needs their spread and centre)."""

    @property
    def name(self) -> str:
        return "box-landmarks"

    def landmarks(self, image: Any, detection: Detection) -> tuple[tuple[float, float], ...]:
        return fake_landmarks(detection.bbox_xyxy)


class MeanEmbedder:
    """The fake pipeline's colour "model" as an Embedder on dlib's 150 px chips: mean R, G, B of each chip."""

    def __init__(self) -> None:
        self.spec = dataclasses.replace(fake_embedding_spec(), align_template="dlib-chip-150", input_size_wh=(150, 150))
        self.batches: list[int] = []

    @property
    def backend_name(self) -> str:
        return "numpy"

    def embed_chips(self, chips: Sequence[Any]) -> npt.NDArray[np.float32]:
        self.batches.append(len(chips))
        return np.stack([c.reshape(-1, 3).mean(axis=0) + 1.0 for c in chips]).astype(np.float32)


RED = (200, 20, 20)
BLUE = (20, 20, 200)
CORNER_BIG = (0.0, 0.0, 80.0, 80.0)
CENTRE_SMALL = (170.0, 120.0, 230.0, 180.0)
SIZE_WH = (400, 300)


def _pipeline(
    full: RecordingDetector,
    fast: RecordingDetector | None = None,
    **config: Any,
) -> Pipeline:
    embedder = MeanEmbedder()
    return Pipeline(
        detector=full,
        fast_detector=fast,
        landmarker=BoxLandmarker(),
        embedder=embedder,
        comparator=Comparator(embedder.spec),
        config=PipelineConfig(flip_average=False, **config),
    )


def _image(size_wh: tuple[int, int] = SIZE_WH) -> npt.NDArray[np.uint8]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (size_wh[1], size_wh[0], 3), dtype=np.uint8)


def _det(box: tuple[float, float, float, float], landmarks: bool = False) -> Detection:
    return Detection(bbox_xyxy=box, score=1.0, detector="t", landmarks_xy=fake_landmarks(box) if landmarks else None)


def test_face_prominence_discounts_size_by_distance_from_the_centre() -> None:
    centred = _det((150.0, 100.0, 250.0, 200.0))
    assert face_prominence(centred, SIZE_WH) == pytest.approx(100.0)  # at the centre: its size
    # Half-way to the corner along the diagonal: (d / R)^2 = 0.25.
    halfway = _det((50.0, 25.0, 150.0, 125.0))
    assert face_prominence(halfway, SIZE_WH) == pytest.approx(100.0 * 0.75)
    # In the corner the discount floors at 0.05, never 0: a lone face in a corner is still a face.
    corner = _det((-50.0, -50.0, 50.0, 50.0))
    assert face_prominence(corner, SIZE_WH) == pytest.approx(100.0 * 0.05)
    # With landmarks, their centre and spread count, not the box's.
    with_points = _det((150.0, 100.0, 250.0, 200.0), landmarks=True)
    assert face_size_px(with_points) == pytest.approx(60.0)
    centre = np.mean(with_points.landmarks_xy, axis=0)
    offset = np.hypot(centre[0] - 200, centre[1] - 150) / (np.hypot(400, 300) / 2)
    assert face_prominence(with_points, SIZE_WH) == pytest.approx(60.0 * (1 - offset**2))


@pytest.mark.parametrize(("selection", "first"), [("primary", CENTRE_SMALL), ("largest", CORNER_BIG)])
def test_selection_puts_the_primary_or_the_largest_face_first(
    selection: FaceSelection, first: tuple[float, float, float, float]
) -> None:
    full = RecordingDetector("full", [CORNER_BIG, CENTRE_SMALL])
    by_config = _pipeline(full, face_selection=selection).detect_faces(_image())
    assert by_config[0].bbox_xyxy == first and len(by_config) == 2
    other: FaceSelection = "largest" if selection == "primary" else "primary"
    per_call = _pipeline(full, face_selection=other).detect_faces(_image(), selection=selection)
    assert per_call[0].bbox_xyxy == first
    assert rank_faces(list(reversed(by_config)), SIZE_WH, selection) == by_config


def test_the_cheap_pass_runs_first_and_the_full_cascade_only_when_it_finds_nothing() -> None:
    fast = RecordingDetector("fast", [CENTRE_SMALL])
    full = RecordingDetector("full", [CORNER_BIG, CENTRE_SMALL])
    pipeline = _pipeline(full, fast)
    face, found = pipeline.embed_main_face(_image())
    assert face is not None and face.detection.detector == "fast" and found == 1
    assert (len(fast.seen_wh), len(full.seen_wh)) == (1, 0)
    (only,) = pipeline.detect_faces(_image(), largest_only=True)
    assert only.detector == "fast" and len(full.seen_wh) == 0
    assert [d.detector for d in pipeline.detect_faces(_image(), cheap_first=True)] == ["fast"]

    fast.boxes = []  # the cheap pass misses: the cascade runs and its faces are the answer
    face, found = pipeline.embed_main_face(_image())
    assert face is not None and face.detection.detector == "full" and found == 2
    assert len(full.seen_wh) == 1

    # Without the cheap pass (all faces), only the full cascade runs.
    runs_before = len(fast.seen_wh)
    assert len(pipeline.detect_faces(_image())) == 2
    assert len(fast.seen_wh) == runs_before
    # Only the selected face is embedded on the fast path.
    assert pipeline.embedder.batches[-2:] == [1, 1]  # type: ignore[attr-defined]


def test_without_a_cheap_detector_the_fast_path_uses_the_cascade() -> None:
    full = RecordingDetector("full", [CENTRE_SMALL])
    face, found = _pipeline(full, None).embed_main_face(_image())
    assert face is not None and found == 1 and len(full.seen_wh) == 1


def test_big_photos_are_detected_downsized_and_boxes_come_back_in_full_pixels() -> None:
    full = RecordingDetector("full", [(10.0, 20.0, 30.0, 40.0)])
    pipeline = _pipeline(full, detect_max_side_px=200)
    (found,) = pipeline.detect_faces(_image((800, 400)))
    assert full.seen_wh == [(200, 100)]
    assert found.bbox_xyxy == pytest.approx((40.0, 80.0, 120.0, 160.0))
    # Landmarks are found on the full image, in the full box.
    assert found.landmarks_xy == fake_landmarks(found.bbox_xyxy)
    # A per-call limit (video's face_detection_scale) overrides the config's.
    pipeline.detect_faces(_image((800, 400)), max_side_px=400)
    assert full.seen_wh[-1] == (400, 200)
    # Small photos are not touched.
    pipeline.detect_faces(_image((150, 100)))
    assert full.seen_wh[-1] == (150, 100)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"selection": "biggest"}, "selection"), ({"max_side_px": 10}, "max_side_px"), ({"max_side_px": 1.5}, "integer")],
)
def test_detect_faces_checks_its_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        _pipeline(RecordingDetector("full", [])).detect_faces(_image(), **kwargs)


def test_embed_faces_embeds_every_face_in_one_batch_selected_first() -> None:
    full = RecordingDetector("full", [CORNER_BIG, CENTRE_SMALL])
    pipeline = _pipeline(full, batch_size=8)
    faces = pipeline.embed_faces(_image())
    assert [f.detection.bbox_xyxy for f in faces] == [CENTRE_SMALL, CORNER_BIG]
    assert pipeline.embedder.batches == [2]  # type: ignore[attr-defined]
    assert all(f.faceprint.model_id == FAKE_MODEL_ID for f in faces)
    assert pipeline.model_options["detector"] == "full"


@pytest.mark.parametrize(
    ("config", "stages", "fast"),
    [
        ({}, ["dlib-hog@1", "dlib-hog@2", "mmod@1", "dlib-hog@2-0.5"], "dlib-hog@0"),
        ({"upsample": 0}, ["dlib-hog@0", "dlib-hog@1", "mmod@1", "dlib-hog@1-0.5"], None),
        ({"fallback": False}, ["dlib-hog@1"], "dlib-hog@0"),
        (
            {"assume_cropped": True},
            ["dlib-hog@1", "dlib-hog@2", "mmod@1", "dlib-hog@2-0.5", "center-crop"],
            "dlib-hog@0",
        ),
        ({"detector": "mmod"}, ["mmod@1", "dlib-hog@2", "dlib-hog@2-0.5"], None),
        ({"detector": "mmod", "upsample": 0, "fallback": False}, ["mmod@0"], None),
    ],
)
def test_the_cascade_for_each_config(config: dict[str, Any], stages: list[str], fast: str | None) -> None:
    native = object()
    made: list[int] = []

    def mmod(upsample: int) -> Detector:
        made.append(upsample)
        return RecordingDetector(f"mmod@{upsample}", [])

    detector, cheap = build_detector(PipelineConfig(**config), hog_native=native, mmod=mmod)
    built = list(detector.stages) if isinstance(detector, CascadeDetector) else [detector]
    assert [s.name for s in built] == stages
    assert (None if cheap is None else cheap.name) == fast
    hog = [s for s in [*built, cheap] if isinstance(s, DlibHogDetector)]
    assert all(s.native is native for s in hog)  # one native HOG object for every stage
    assert len(hog) == sum(name.startswith("dlib-hog") for name in [*stages, fast or ""])
    assert len(made) == sum(name.startswith("mmod") for name in stages)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"detector": "cnn"}, "did you mean 'mmod'"),
        ({"backend": "gpu"}, "did you mean 'onnx'"),
        ({"detector": "retinaface"}, "unknown detector"),
        ({"face_selection": "biggest"}, "unknown face_selection"),
        ({"landmarks": "dlib-landmarks-194"}, "unknown landmarks"),
        ({"upsample": True}, "integer"),
        ({"upsample": 4}, "0-3"),
        ({"batch_size": 0}, "batch_size"),
        ({"intra_op_threads": 0}, "intra_op_threads"),
        ({"detect_max_side_px": 32}, "detect_max_side_px"),
        ({"fallback": "yes"}, "true or false"),
        ({"embedder": ""}, "embedder"),
    ],
)
def test_pipeline_config_refuses_values_it_cannot_build(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageError, match=match) as info:
        PipelineConfig(**changes)
    assert info.value.code == "usage_error"
    with pytest.raises(UsageError):
        with_overrides(PipelineConfig(), **changes)


@pytest.mark.integration
def test_the_real_pipeline_shares_one_hog_detector_and_builds_mmod_on_first_use(
    examples_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dlib

    from faceprint.detect.lazy import LazyDetector
    from faceprint.pipeline import load_pipeline

    pipeline = load_pipeline(PipelineConfig(intra_op_threads=1))
    assert isinstance(pipeline.detector, CascadeDetector)
    hog = [s for s in [*pipeline.detector.stages, pipeline.fast_detector] if isinstance(s, DlibHogDetector)]
    assert len(hog) == 4 and len({id(s.native) for s in hog}) == 1
    (mmod,) = [s for s in pipeline.detector.stages if isinstance(s, LazyDetector)]
    image = load_image(examples_dir / "obama.jpg")
    assert pipeline.detect_faces(image)[0].detector == "dlib-hog@1"
    assert mmod.built is None  # HOG found the face: no MMOD session exists
    # The serialised HOG detector finds exactly what dlib's compiled-in one finds.
    rects, scores, _ = hog[0].native.run(image, 1, 0.0)
    expected_rects, expected_scores, _ = dlib.get_frontal_face_detector().run(image, 1, 0.0)
    assert [str(r) for r in rects] == [str(r) for r in expected_rects] and list(scores) == list(expected_scores)
    buf = io.BytesIO()
    Image.new("RGB", (120, 90), (120, 130, 140)).save(buf, "PNG")
    assert pipeline.detect_faces(decode_image(buf.getvalue())) == []  # every stage ran, MMOD included
    assert mmod.built is not None and mmod.built.name == mmod.name


# --- the fake pipeline keeps the real one's semantics -------------------------------------------------------


def test_the_fake_tells_primary_from_largest() -> None:
    group = decode_image(make_off_centre_group_png(big_rgb=RED, centred_rgb=BLUE))
    primary = FakePipeline()
    largest = FakePipeline(PipelineConfig(face_selection="largest"))
    assert [d.bbox_xyxy for d in primary.detect_faces(group)] == [(96.0, 56.0, 144.0, 104.0), (4.0, 4.0, 68.0, 68.0)]
    assert largest.detect_faces(group)[0].bbox_xyxy == (4.0, 4.0, 68.0, 68.0)
    assert primary.detect_faces(group, selection="largest")[0].bbox_xyxy == (4.0, 4.0, 68.0, 68.0)
    for pipeline, colour in ((primary, BLUE), (largest, RED)):
        face, found = pipeline.embed_main_face(group)
        assert face is not None and found == 2
        assert face.faceprint.vector.tolist() == [c + 1.0 for c in colour]
        (only,) = pipeline.embed_faces(group, largest_only=True)
        assert only.faceprint.vector.tolist() == face.faceprint.vector.tolist()
    assert all(len(d.landmarks_xy or ()) == 5 for d in primary.detect_faces(group))


def test_the_fake_ranks_like_the_real_pipeline() -> None:
    group = decode_image(make_off_centre_group_png())
    boxes = [(4.0, 4.0, 68.0, 68.0), (96.0, 56.0, 144.0, 104.0)]
    for selection in ("primary", "largest"):
        real = _pipeline(RecordingDetector("full", boxes), face_selection=selection)
        fake = FakePipeline(PipelineConfig(face_selection=selection))
        assert [d.bbox_xyxy for d in real.detect_faces(group)] == [d.bbox_xyxy for d in fake.detect_faces(group)]


def test_the_fakes_embed_faces_is_detect_align_embed() -> None:
    image = decode_image(make_two_face_png(RED, BLUE))
    pipeline = FakePipeline()
    faces = pipeline.embed_faces(image)
    detections = pipeline.detect_faces(image)
    chips = [pipeline.extract_aligned_face(image, d) for d in detections]
    assert all(chip.shape == (8, 8, 3) for chip in chips)
    batch = pipeline.embed_batch(chips)
    assert [f.faceprint.vector.tolist() for f in faces] == [p.vector.tolist() for p in batch]
    assert [f.detection for f in faces] == detections
    assert faces[0].faceprint.vector.tolist() == [c + 1.0 for c in BLUE]  # the wider face is the main one
    with pytest.raises(UsageError, match="chip"):
        pipeline.embed_batch([pipeline.extract_aligned_face(image, detections[0], size=150)])
    assert pipeline.embed_calls == 2 and pipeline.chips_embedded == 4


def test_the_fakes_cheap_pass_can_miss_small_faces() -> None:
    small_and_big = decode_image(
        make_group_png([(RED, (10, 10, 30, 30)), (BLUE, (100, 20, 180, 100))], size_wh=(200, 120))
    )
    only_small = decode_image(make_group_png([(RED, (10, 10, 30, 30))], size_wh=(200, 120)))
    pipeline = FakePipeline(fast_min_face_px=40)
    assert len(pipeline.detect_faces(small_and_big, cheap_first=True)) == 1  # the fast pass saw the big one only
    assert len(pipeline.detect_faces(small_and_big)) == 2
    face, found = pipeline.embed_main_face(only_small)  # the fast pass saw nothing: the full one ran
    assert face is not None and found == 1 and face.detection.detector == "fake"
    assert [c.passes for c in pipeline.detection_calls] == [("fast",), ("full",), ("fast", "full")]
    pipeline.detect_faces(small_and_big, max_side_px=640)
    assert pipeline.detection_calls[-1].max_side_px == 640
    with pytest.raises(UsageError):
        pipeline.detect_faces(small_and_big, max_side_px=8)


def test_the_fake_keeps_its_old_rules() -> None:
    pipeline = FakePipeline()
    assert pipeline.embed_faces(decode_image(make_blank_png())) == []
    face, found = pipeline.embed_main_face(decode_image(make_blank_png()))
    assert face is None and found == 0
    red = pipeline.embed_faces(decode_image(make_face_png(RED)))
    red_again = pipeline.embed_faces(decode_image(make_face_png(RED, size_wh=(40, 30))))
    blue = pipeline.embed_faces(decode_image(make_face_png(BLUE)))
    assert pipeline.compare(red[0].faceprint, red_again[0].faceprint).similarity == pytest.approx(1.0)
    assert not pipeline.compare(red[0].faceprint, blue[0].faceprint).is_match
    assert [h for h, *_ in pipeline.embedded_images] == [32, 32, 32, 30, 32]
    other = dataclasses.replace(red[0].faceprint, contract_id="other:1")
    with pytest.raises(ContractMismatchError):
        pipeline.compare(other, red[0].faceprint)


def test_the_crashing_fake_kills_its_process_when_it_detects() -> None:
    context = multiprocessing.get_context("fork")
    for method in ("detect_faces", "embed_faces", "embed_main_face"):
        process = context.Process(target=_crash_with, args=(method,))
        process.start()
        process.join(timeout=30)
        assert process.exitcode == 70, method


def _crash_with(method: str) -> None:
    getattr(crashing_pipeline_factory(PipelineConfig()), method)(decode_image(make_face_png(RED)))


@pytest.mark.integration
def test_a_second_load_hashes_and_converts_nothing() -> None:
    from faceprint.errors import ModelError
    from faceprint.models.store import ModelStore
    from faceprint.pipeline import load_pipeline

    try:
        load_pipeline(PipelineConfig(intra_op_threads=1))  # the first load may verify and convert
    except ModelError as err:
        pytest.skip(f"real model weights unavailable: {err}")
    store = ModelStore()  # a new store reads the digests the first one wrote, as the next process does
    pipeline = load_pipeline(PipelineConfig(intra_op_threads=1), store=store)
    assert store.digests.hashed_files == 0
    assert pipeline.spec.id == "dlib-resnet-v1"
