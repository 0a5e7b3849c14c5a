"""dlib's MMOD detector around the network: the tiled input pyramid, score-map decoding and NMS.

The converted MMOD graph (:func:`faceprint.models.dlib_to_onnx.convert_dlib_mmod`) is only the CNN. What
dlib does before and after it is transcribed here in numpy, from ``input_rgb_image_pyramid``,
``compute_tiled_image_pyramid_details``, ``loss_mmod_::to_label`` and the Python binding's upsampling, so
that :class:`~faceprint.detect.onnx_mmod.OnnxMmodDetector` finds the boxes
``dlib.cnn_face_detection_model_v1`` finds. Nothing here needs onnxruntime or dlib.

Rectangles are dlib's: ``(left, top, right, bottom)`` integers, *inclusive* on all sides.

Example:
    >>> params = MmodParams.from_json(metadata[MMOD_PARAMS_KEY])          # doctest: +SKIP
    >>> tensor, rects = tiled_pyramid(image, params)                       # doctest: +SKIP
    >>> scores = session.run(None, {"tensor": tensor})[0]                   # doctest: +SKIP
    >>> [d.rect for d in decode(scores, rects, params)]                     # doctest: +SKIP
    [(112, 68, 191, 147)]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from faceprint.errors import InvalidArgumentError
from faceprint.models.dlib_to_onnx import BoxOverlap, MmodParams

FloatArray = npt.NDArray[np.float32]
Rect = tuple[int, int, int, int]
"""dlib's ``rectangle``: left, top, right, bottom, all inclusive."""

MIN_LEVEL_HEIGHT = 5
"""``compute_tiled_image_pyramid_details`` stops adding levels below this height."""


@dataclass(frozen=True, slots=True)
class MmodDetection:
    """One box the way dlib's ``mmod_rect`` reports it: inclusive rectangle, confidence, window label."""

    rect: Rect
    score: float
    window: int = 0
    label: str = ""


@dataclass(frozen=True, slots=True)
class PyramidLayout:
    """Where each pyramid level sits in the tiled input tensor, and the tensor's size."""

    rects: tuple[Rect, ...]
    height: int
    width: int


# --- the tiled pyramid ----------------------------------------------------------------------------------


def pyramid_layout(height: int, width: int, params: MmodParams) -> PyramidLayout:
    """dlib's ``compute_tiled_image_pyramid_details`` for ``pyramid_down<params.pyramid_down>``.

    Levels shrink by ``(N - 1) / N`` until one is shorter than 5 rows. They are stacked down a first
    column; once a level fits beside the previous one and the column holds about half the total height,
    the rest go bottom-up in a second column at the right edge, stopping before one would touch level 0.

    Example:
        >>> layout = pyramid_layout(250, 250, params)  # doctest: +SKIP
        >>> layout.rects[0]                             # doctest: +SKIP
        (11, 11, 260, 260)
    """
    if height <= 0 or width <= 0:
        return PyramidLayout(rects=(), height=0, width=0)
    rate = (params.pyramid_down - 1) / params.pyramid_down
    padding, outer = params.pyramid_padding, params.pyramid_outer_padding
    sizes_wh = [(width, height)]
    nr, nc = height, width
    while True:
        nr, nc = math.floor(rate * nr), math.floor(rate * nc)
        if nr * nc == 0 or nr < MIN_LEVEL_HEIGHT:
            break
        sizes_wh.append((nc, nr))

    first_w, first_h = sizes_wh[0]
    total_height = sum(h + padding for _, h in sizes_wh) - 2 * padding
    column_height, previous_w = 0, 0
    for w, h in sizes_wh:
        if w <= first_w - previous_w - padding and (column_height - first_h) * 2 >= total_height - first_h:
            break
        column_height += h + padding
        previous_w = w
    column_height -= padding

    rects: list[Rect] = []
    y = outer
    while y < column_height + outer and len(rects) < len(sizes_wh):
        w, h = sizes_wh[len(rects)]
        rects.append((outer, y, outer + w - 1, y + h - 1))
        y += h + padding
    y -= padding
    first = rects[0]
    while len(rects) < len(sizes_wh):
        w, h = sizes_wh[len(rects)]
        right, bottom = outer + first_w - 1, y - 1
        rect = (right - w + 1, bottom - h + 1, right, bottom)
        if _intersects(first, rect):
            break
        rects.append(rect)
        y -= h + padding
    return PyramidLayout(rects=tuple(rects), height=column_height + 2 * outer, width=first_w + 2 * outer)


def _intersects(a: Rect, b: Rect) -> bool:
    return max(a[0], b[0]) <= min(a[2], b[2]) and max(a[1], b[1]) <= min(a[3], b[3])


def _bilinear_taps(source: int, target: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], FloatArray]:
    """Indices and weights of dlib's ``resize_image``: corners map to corners (``scale = (in-1)/(out-1)``)."""
    scale = (source - 1) / max(target - 1, 1)
    position = np.arange(target, dtype=np.float64) * scale
    low = np.floor(position).astype(np.intp)
    high = np.minimum(low + 1, source - 1)
    return low, high, (position - low).astype(np.float32)


def resize_bilinear(planes: FloatArray, height: int, width: int) -> FloatArray:
    """Resize ``(channels, h, w)`` float32 planes like dlib's ``resize_image`` with bilinear interpolation.

    Separable: interpolating the two source rows first, then across them, is the same bilinear formula.

    Example:
        >>> resize_bilinear(np.array([[[0.0, 2.0]]], np.float32), 1, 3).tolist()
        [[[0.0, 1.0, 2.0]]]
    """
    _, src_h, src_w = planes.shape
    top, bottom, fy = _bilinear_taps(src_h, height)
    left, right, fx = _bilinear_taps(src_w, width)
    upper, lower = planes[:, top], planes[:, bottom]
    upper = upper[:, :, left] * (1 - fx) + upper[:, :, right] * fx
    lower = lower[:, :, left] * (1 - fx) + lower[:, :, right] * fx
    fy_col = fy[:, None]
    return np.asarray(upper * (1 - fy_col) + lower * fy_col, dtype=np.float32)


def tiled_pyramid(image: npt.NDArray[np.uint8], params: MmodParams) -> tuple[FloatArray, tuple[Rect, ...]]:
    """The network input for ``image``: ``(1, 3, H, W)`` float32 and the rectangle of each level.

    Level 0 is ``(pixel - mean) / 256``; each next level is the previous one resized bilinearly, as
    ``input_rgb_image_pyramid::to_tensor`` builds it. Everything outside the levels is 0.

    Raises:
        ValueError: ``image`` is not an ``(h, w, 3)`` uint8 array with h, w > 0.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.shape[0] * image.shape[1] == 0:
        raise InvalidArgumentError(f"expected a non-empty (h, w, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    layout = pyramid_layout(image.shape[0], image.shape[1], params)
    tensor = np.zeros((1, 3, layout.height, layout.width), np.float32)
    planes = tensor[0]
    mean = np.asarray(params.mean_rgb, np.float32)[:, None, None]
    left, top, right, bottom = layout.rects[0]
    planes[:, top : bottom + 1, left : right + 1] = (image.transpose(2, 0, 1) - mean) / np.float32(256)
    for (l0, t0, r0, b0), (l1, t1, r1, b1) in itertools.pairwise(layout.rects):
        source = planes[:, t0 : b0 + 1, l0 : r0 + 1]
        planes[:, t1 : b1 + 1, l1 : r1 + 1] = resize_bilinear(source, b1 - t1 + 1, r1 - l1 + 1)
    return tensor, layout.rects


# --- upsampling (the Python binding's ``upsample_num_times``) ----------------------------------------------


def pyramid_up(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """dlib's ``pyramid_up(img, pyramid_down<2>)`` on an RGB image, bit for bit: about twice the size.

    The output size is ``pyramid_down<2>::rect_up`` of the image rectangle, rounded: ``(2h + 1, 2w + 2)``.
    The values follow dlib's RGB ``resize_image``: row positions accumulate in double; columns go four at
    a time with positions accumulated in float32 (its SIMD loop) and the last few, past the point where a
    block would read beyond the image, in double; interpolated values are truncated, not rounded. The
    float32 accumulation is reproduced because it moves values across integer boundaries in wide images
    (4% of the values of a 640 px image differ by one otherwise).

    Example:
        >>> pyramid_up(np.zeros((4, 6, 3), np.uint8)).shape
        (9, 14, 3)
    """
    height, width = image.shape[:2]
    out_h, out_w = 2 * height + 1, 2 * width + 2
    x_scale = (width - 1) / max(out_w - 1, 1)
    y_scale = (height - 1) / max(out_h - 1, 1)
    y = np.cumsum(np.concatenate([[-y_scale], np.full(out_h, y_scale)]))[1:]
    top = np.floor(y).astype(np.intp)
    bottom = np.minimum(top + 1, height - 1)
    tb_frac = y - top

    # The SIMD part: lanes start at -4s, -3s, -2s, -s and each block adds float32(4s) in float32.
    blocks = out_w // 4 + 1
    lanes = np.array([-4 * x_scale + lane * x_scale for lane in range(4)], np.float32)
    steps = np.full((blocks, 4), np.float32(4 * x_scale), np.float32)
    x_simd = np.cumsum(np.concatenate([lanes[None], steps]), axis=0, dtype=np.float32)[1:]
    left_simd = np.trunc(x_simd).astype(np.intp)
    past_edge = np.nonzero(left_simd[:, 3] + 1 >= width)[0]
    simd_cols = min(4 * (int(past_edge[0]) if past_edge.size else blocks), out_w)
    x = x_simd.reshape(-1)[:simd_cols]
    left = left_simd.reshape(-1)[:simd_cols]
    lr = (x - left.astype(np.float32)).astype(np.float32)[None, :, None]
    inv_lr = np.float32(1) - lr
    tb = tb_frac.astype(np.float32)[:, None, None]
    inv_tb = (1 - tb_frac).astype(np.float32)[:, None, None]
    source = image.astype(np.float32)
    upper, lower = source[top], source[bottom]
    value = (inv_tb * inv_lr) * upper[:, left] + (inv_tb * lr) * upper[:, left + 1]
    value = value + (tb * inv_lr) * lower[:, left]
    value = value + (tb * lr) * lower[:, left + 1]
    out = np.empty((out_h, out_w, 3), np.uint8)
    out[:, :simd_cols] = np.trunc(value).astype(np.uint8)

    if simd_cols < out_w:  # dlib's scalar tail, in double
        tail = np.cumsum(np.concatenate([[-x_scale + simd_cols * x_scale], np.full(out_w - simd_cols, x_scale)]))[1:]
        tail_left = np.floor(tail).astype(np.intp)
        tail_right = np.minimum(tail_left + 1, width - 1)
        fx = (tail - tail_left)[None, :, None]
        fy = tb_frac[:, None, None]
        wide = image.astype(np.float64)
        upper64, lower64 = wide[top], wide[bottom]
        tail_value = (1 - fy) * ((1 - fx) * upper64[:, tail_left] + fx * upper64[:, tail_right]) + fy * (
            (1 - fx) * lower64[:, tail_left] + fx * lower64[:, tail_right]
        )
        out[:, simd_cols:] = np.trunc(tail_value).astype(np.uint8)
    return out


def rect_down(rect: Rect, levels: int) -> Rect:
    """Map a rectangle found in an image upsampled ``levels`` times back to the original image.

    ``pyramid_down<2>::rect_down`` applied ``levels`` times in floating point, then rounded like dlib's
    ``drectangle`` to ``rectangle`` conversion.
    """
    left, top, right, bottom = (float(v) for v in rect)
    for _ in range(levels):
        left, top = left / 2.0 - 1.25, top / 2.0 - 0.75
        right, bottom = right / 2.0 - 1.25, bottom / 2.0 - 0.75
    return (_round(left), _round(top), _round(right), _round(bottom))


def _round(value: float) -> int:
    # dlib converts drectangle to rectangle with floor(x + 0.5), not banker's rounding.
    return math.floor(value + 0.5)


def input_plan(height: int, width: int, upsample: int, max_input_px: int | None) -> tuple[int, float]:
    """How to run MMOD on an image within ``max_input_px``: ``(upsample, scale)``.

    The network's activations grow with its input (about 125 bytes per pixel), so an image that would
    exceed ``max_input_px`` once doubled ``upsample`` times is doubled fewer times, and one that exceeds
    it as it is gets downsized by ``scale`` (boxes are then mapped back). None: always ``(upsample, 1.0)``.

    Example:
        >>> input_plan(250, 250, 1, 2_250_000), input_plan(1000, 1000, 1, 2_250_000)
        ((1, 1.0), (0, 1.0))
        >>> input_plan(3000, 3000, 1, 2_250_000)
        (0, 0.5)
    """
    if max_input_px is None:
        return upsample, 1.0
    while upsample > 0 and height * width * 4**upsample > max_input_px:
        upsample -= 1
    if height * width <= max_input_px:
        return upsample, 1.0
    return 0, math.sqrt(max_input_px / (height * width))


def rect_up(rect: Rect, back_x: float, back_y: float) -> Rect:
    """An inclusive rectangle found in a downsized image, in the pixels of the original one.

    Example:
        >>> rect_up((10, 20, 29, 39), 2.0, 2.0)
        (20, 40, 59, 79)
    """
    return (
        round(rect[0] * back_x),
        round(rect[1] * back_y),
        round((rect[2] + 1) * back_x) - 1,
        round((rect[3] + 1) * back_y) - 1,
    )


# --- decoding and non-max suppression ----------------------------------------------------------------------


def boxes_overlap(a: Rect, b: Rect, overlap: BoxOverlap) -> bool:
    """dlib's ``test_box_overlap``: IoU above ``overlap.iou``, or either box covered above ``overlap.covered``.

    Example:
        >>> boxes_overlap((0, 0, 9, 9), (0, 0, 9, 4), BoxOverlap(iou=0.9, covered=0.9))
        True
    """
    inner_w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    inner_h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if inner_w <= 0 or inner_h <= 0:
        return False
    inner = inner_w * inner_h
    outer = (max(a[2], b[2]) - min(a[0], b[0]) + 1) * (max(a[3], b[3]) - min(a[1], b[1]) + 1)
    return inner / outer > overlap.iou or inner / _area(a) > overlap.covered or inner / _area(b) > overlap.covered


def _area(rect: Rect) -> int:
    return (rect[2] - rect[0] + 1) * (rect[3] - rect[1] + 1)


def box_iou(a: Rect, b: Rect) -> float:
    """Intersection over union of two inclusive rectangles (0.0 when they do not touch)."""
    inner_w = max(min(a[2], b[2]) - max(a[0], b[0]) + 1, 0)
    inner_h = max(min(a[3], b[3]) - max(a[1], b[1]) + 1, 0)
    inner = inner_w * inner_h
    return inner / (_area(a) + _area(b) - inner)


def _nearest_level(
    rects: Sequence[Rect], x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]
) -> npt.NDArray[np.intp]:
    """dlib's ``nearest_rect`` per point: the first level containing it, else the closest one."""
    bounds = np.asarray(rects, dtype=np.float64)
    dx = np.clip(x[:, None], bounds[None, :, 0], bounds[None, :, 2]) - x[:, None]
    dy = np.clip(y[:, None], bounds[None, :, 1], bounds[None, :, 3]) - y[:, None]
    # argmin returns the first minimum, so a point inside several levels maps to the first, as in dlib.
    nearest: npt.NDArray[np.intp] = np.argmin(np.hypot(dx, dy), axis=1).astype(np.intp)
    return nearest


def decode_scores(
    scores: FloatArray,
    rects: Sequence[Rect],
    params: MmodParams,
    *,
    adjust_threshold: float = 0.0,
) -> list[MmodDetection]:
    """Every score-map cell above ``adjust_threshold`` as a box in image pixels, best first (before NMS).

    Args:
        scores: the network output for one image, ``(windows, h, w)`` or ``(1, windows, h, w)``.
        rects: the pyramid levels from :func:`tiled_pyramid`.
        params: the detector's windows, strides and pyramid.
        adjust_threshold: dlib's ``adjust_threshold``; lower finds more (and falser) faces.

    Raises:
        ValueError: the score map does not have one channel per detector window.
    """
    if scores.ndim == 4:
        if scores.shape[0] != 1:
            raise InvalidArgumentError(f"decode one image at a time, got a batch of {scores.shape[0]}")
        scores = scores[0]
    if scores.ndim != 3 or scores.shape[0] != len(params.detector_windows):
        raise InvalidArgumentError(
            f"score map of shape {scores.shape} does not have one channel per detector window "
            f"({len(params.detector_windows)})"
        )
    if not rects:
        return []
    channel, row, col = np.nonzero(scores > adjust_threshold)
    if channel.size == 0:
        return []
    values = scores[channel, row, col].astype(np.float64)
    cx = (params.feature_stride * col + params.feature_offset).astype(np.float64)
    cy = (params.feature_stride * row + params.feature_offset).astype(np.float64)
    half_w = np.array([(w.width - 1) / 2 for w in params.detector_windows])[channel]
    half_h = np.array([(w.height - 1) / 2 for w in params.detector_windows])[channel]
    level = _nearest_level(rects, cx, cy)
    origin = np.asarray(rects, dtype=np.float64)[level, :2]
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    boxes -= np.concatenate([origin, origin], axis=1)
    # pyramid_down<N>::point_up, applied once per level below the top, in double like dlib.
    up = params.pyramid_down / (params.pyramid_down - 1.0)
    for depth in range(int(level.max())):
        deeper = level > depth
        boxes[deeper] = boxes[deeper] * up + 0.3
    rounded = np.floor(boxes + 0.5).astype(np.int64)
    # Stable sort on the negated score: equal scores keep score-map order.
    order = np.argsort(-values, kind="stable")
    labels = [w.label for w in params.detector_windows]
    return [
        MmodDetection(
            rect=(int(rounded[i, 0]), int(rounded[i, 1]), int(rounded[i, 2]), int(rounded[i, 3])),
            score=float(values[i]),
            window=int(channel[i]),
            label=labels[int(channel[i])],
        )
        for i in order
    ]


def non_max_suppression(candidates: Sequence[MmodDetection], overlap: BoxOverlap) -> list[MmodDetection]:
    """dlib's greedy NMS: keep a box unless it overlaps (:func:`boxes_overlap`) one kept before it.

    ``candidates`` must be sorted best first (:func:`decode_scores` returns them so). Windows of different
    labels suppress each other too, as in ``loss_mmod_``.
    """
    kept: list[MmodDetection] = []
    for candidate in candidates:
        if not any(boxes_overlap(k.rect, candidate.rect, overlap) for k in kept):
            kept.append(candidate)
    return kept


def decode(
    scores: FloatArray,
    rects: Sequence[Rect],
    params: MmodParams,
    *,
    adjust_threshold: float = 0.0,
) -> list[MmodDetection]:
    """:func:`decode_scores` then :func:`non_max_suppression` with the detector's own NMS rule."""
    candidates = decode_scores(scores, rects, params, adjust_threshold=adjust_threshold)
    return non_max_suppression(candidates, params.overlaps_nms)
